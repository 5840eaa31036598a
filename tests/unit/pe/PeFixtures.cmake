# PeFixtures.cmake: builds the PE fixtures of fixtures/ for x64 and x86 and, for each image, the
# expected text derived from llvm-readobj-14. Sets KDH_PE_FIXTURES (outputs) and
# KDH_PE_FIXTURE_DIR; leaves KDH_PE_FIXTURES empty when the toolchain is missing.
find_program(KDH_CLANG14 clang-14)
find_program(KDH_LLD_LINK14 lld-link-14)
find_program(KDH_READOBJ14 llvm-readobj-14)
find_package(Python3 COMPONENTS Interpreter)
set(KDH_PE_FIXTURES "")
set(KDH_PE_FIXTURE_DIR "${CMAKE_CURRENT_BINARY_DIR}/fx")
if(NOT KDH_CLANG14 OR NOT KDH_LLD_LINK14 OR NOT KDH_READOBJ14 OR NOT Python3_FOUND)
  message(STATUS "PE fixtures: clang-14, lld-link-14, llvm-readobj-14 or python3 missing; test_pe will skip")
  return()
endif()
set(src "${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
set(fx "${KDH_PE_FIXTURE_DIR}")
set(cflags -ffreestanding -fno-builtin -funwind-tables -O1 -g -gcodeview)
set(link /nologo /Brepro /dll /noentry /nodefaultlib /debug)
foreach(arch x64 x86)
  if(arch STREQUAL "x64")
    set(triple x86_64-pc-windows-msvc)
  else()
    set(triple i686-pc-windows-msvc)
  endif()
  add_custom_command(OUTPUT ${fx}/fxkrnl_${arch}.dll ${fx}/fxkrnl_${arch}.lib ${fx}/fxkrnl_${arch}.pdb
    COMMAND ${CMAKE_COMMAND} -E make_directory ${fx}
    COMMAND ${KDH_CLANG14} --target=${triple} ${cflags} -c ${src}/fxkrnl.c -o ${fx}/fxkrnl_${arch}.obj
    COMMAND ${KDH_LLD_LINK14} ${link} /pdb:${fx}/fxkrnl_${arch}.pdb /pdbaltpath:fxkrnl_${arch}.pdb
            /out:${fx}/fxkrnl_${arch}.dll ${fx}/fxkrnl_${arch}.obj
    DEPENDS ${src}/fxkrnl.c VERBATIM)
  add_custom_command(OUTPUT ${fx}/fxdrv_${arch}.dll ${fx}/fxdrv_${arch}.pdb
    COMMAND ${KDH_CLANG14} --target=${triple} ${cflags} -c ${src}/fxdrv.c -o ${fx}/fxdrv_${arch}.obj
    COMMAND ${KDH_LLD_LINK14} ${link} /pdb:${fx}/fxdrv_${arch}.pdb
            /export:Ord5=ExportedTwo,@5,NONAME /export:FwdFn=fxkrnl_${arch}.ExAllocatePoolWithTag
            /out:${fx}/fxdrv_${arch}.dll ${fx}/fxdrv_${arch}.obj ${fx}/fxkrnl_${arch}.lib
    DEPENDS ${src}/fxdrv.c ${fx}/fxkrnl_${arch}.lib VERBATIM)
  foreach(img fxkrnl_${arch} fxdrv_${arch})
    add_custom_command(OUTPUT ${fx}/${img}.expect
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/canon_readobj.py ${KDH_READOBJ14}
              ${fx}/${img}.dll ${fx}/${img}.expect
      DEPENDS ${fx}/${img}.dll ${CMAKE_CURRENT_SOURCE_DIR}/canon_readobj.py VERBATIM)
    list(APPEND KDH_PE_FIXTURES ${fx}/${img}.dll ${fx}/${img}.expect)
  endforeach()
endforeach()
