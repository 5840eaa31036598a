# Helpers that let each module and each test folder declare itself in a few lines, so that
# modules can be added without editing a shared list.

# kdh_module(<name> [SOURCES f.c ...] [DEPS target ...])
#   Builds static library kdh_<name> from the listed sources (default: every .c in the folder).
function(kdh_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  if(NOT M_SOURCES)
    file(GLOB M_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/*.c")
  endif()
  add_library(kdh_${name} STATIC ${M_SOURCES})
  target_include_directories(kdh_${name} PUBLIC "${PROJECT_SOURCE_DIR}/include")
  target_link_libraries(kdh_${name} PUBLIC ${M_DEPS})
  set_property(GLOBAL APPEND PROPERTY KDH_MODULES kdh_${name})
endfunction()

# kdh_test(<name> SOURCES f.c ... [LIBS target ...] [ARGS ...] [TIMEOUT s] [LABELS l ...])
#   A cmocka (or plain) test executable registered with ctest. Exit code 77 means "skipped"
#   (for example when ../shared/samples is absent), and ctest reports it as such.
function(kdh_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/include" "${PROJECT_SOURCE_DIR}/tests/support")
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_compile_definitions(${name} PRIVATE
    KDH_SAMPLES_DIR="${KDH_SAMPLES_DIR}"
    KDH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    KDH_BINARY_DIR="${PROJECT_BINARY_DIR}")
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} SKIP_RETURN_CODE 77
                       LABELS "${T_LABELS}")
endfunction()

# kdh_fuzz(<name> SOURCES f.c ... [LIBS target ...] [CORPUS dir])
#   A libFuzzer harness, built only with -DKDH_FUZZ=ON. ctest runs it for KDH_FUZZ_SECONDS
#   over its checked-in seed corpus (label "fuzz").
set(KDH_FUZZ_SECONDS 10 CACHE STRING "Seconds per fuzz harness in the ctest smoke run")
function(kdh_fuzz name)
  cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  if(NOT KDH_FUZZ)
    return()
  endif()
  add_executable(${name} ${F_SOURCES})
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/include")
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  if(NOT TARGET fuzzers)
    add_custom_target(fuzzers)
  endif()
  add_dependencies(fuzzers ${name})
  set(work "${CMAKE_CURRENT_BINARY_DIR}/${name}-corpus")
  set(cmd ${CMAKE_COMMAND} -E make_directory ${work})
  add_test(NAME ${name}
           COMMAND sh -c "mkdir -p '${work}' && exec \"$0\" -max_total_time=${KDH_FUZZ_SECONDS} -print_final_stats=1 '${work}' ${F_CORPUS}" $<TARGET_FILE:${name}>)
  set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 600)
endfunction()

# Adds every immediate subfolder of <dir> that has a CMakeLists.txt.
function(kdh_add_subfolders dir)
  file(GLOB children LIST_DIRECTORIES true "${dir}/*")
  list(SORT children)
  foreach(child IN LISTS children)
    if(IS_DIRECTORY "${child}" AND EXISTS "${child}/CMakeLists.txt")
      add_subdirectory("${child}")
    endif()
  endforeach()
endfunction()
