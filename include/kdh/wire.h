/* kdh/wire.h: the Windows KD serial protocol ("kdcom") codec: framing constants, packet
 * encoding, an incremental decoder, and the little-endian message layouts that both the host
 * and the simulated target read and write. Pure: no I/O, no clock, no globals, no malloc.
 * Layouts follow docs in /work/shared/reference/kd-protocol.md (sections 1-3). */
#ifndef KDH_WIRE_H
#define KDH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

/* ---- Framing (kd-protocol.md 1.1-1.5) ---------------------------------------------------- */
#define KDH_WIRE_PACKET_LEADER 0x30303030u  /* data packets */
#define KDH_WIRE_CONTROL_LEADER 0x69696969u /* ACK / RESEND / RESET */
#define KDH_WIRE_PACKET_LEADER_BYTE 0x30u
#define KDH_WIRE_CONTROL_LEADER_BYTE 0x69u
#define KDH_WIRE_BREAKIN_BYTE 0x62u         /* 'b', sent alone by the host */
#define KDH_WIRE_TRAILER 0xAAu              /* after every data payload, never after control */
#define KDH_WIRE_HEADER_SIZE 16u
#define KDH_WIRE_PACKET_MAX 4000u           /* largest ByteCount a peer accepts */
#define KDH_WIRE_FRAME_MAX (KDH_WIRE_HEADER_SIZE + KDH_WIRE_PACKET_MAX + 1u)
#define KDH_WIRE_INITIAL_ID 0x80800000u
#define KDH_WIRE_SYNC_BIT 0x00000800u       /* OR-ed into the target's first packet */
#define KDH_WIRE_MAXSTREAM 16u

enum kdh_wire_packet_type {
    KDH_WIRE_TYPE_UNUSED = 0,
    KDH_WIRE_TYPE_STATE_CHANGE32 = 1,
    KDH_WIRE_TYPE_STATE_MANIPULATE = 2,
    KDH_WIRE_TYPE_DEBUG_IO = 3,
    KDH_WIRE_TYPE_ACKNOWLEDGE = 4,
    KDH_WIRE_TYPE_RESEND = 5,
    KDH_WIRE_TYPE_RESET = 6,
    KDH_WIRE_TYPE_STATE_CHANGE64 = 7,
    KDH_WIRE_TYPE_POLL_BREAKIN = 8,
    KDH_WIRE_TYPE_TRACE_IO = 9,
    KDH_WIRE_TYPE_CONTROL_REQUEST = 10,
    KDH_WIRE_TYPE_FILE_IO = 11,
    KDH_WIRE_TYPE_MAX = 12
};

/* ---- API numbers (kd-protocol.md 3.1, 3.6) ----------------------------------------------- */
enum kdh_wire_api {
    KDH_WIRE_API_READ_VIRTUAL_MEMORY = 0x3130,
    KDH_WIRE_API_WRITE_VIRTUAL_MEMORY = 0x3131,
    KDH_WIRE_API_GET_CONTEXT = 0x3132,
    KDH_WIRE_API_SET_CONTEXT = 0x3133,
    KDH_WIRE_API_WRITE_BREAKPOINT = 0x3134,
    KDH_WIRE_API_RESTORE_BREAKPOINT = 0x3135,
    KDH_WIRE_API_CONTINUE = 0x3136,
    KDH_WIRE_API_READ_CONTROL_SPACE = 0x3137,
    KDH_WIRE_API_WRITE_CONTROL_SPACE = 0x3138,
    KDH_WIRE_API_READ_IO_SPACE = 0x3139,
    KDH_WIRE_API_WRITE_IO_SPACE = 0x313A,
    KDH_WIRE_API_REBOOT = 0x313B,
    KDH_WIRE_API_CONTINUE2 = 0x313C,
    KDH_WIRE_API_READ_PHYSICAL_MEMORY = 0x313D,
    KDH_WIRE_API_WRITE_PHYSICAL_MEMORY = 0x313E,
    KDH_WIRE_API_GET_VERSION = 0x3146,
    KDH_WIRE_API_CAUSE_BUGCHECK = 0x3149,
    KDH_WIRE_API_SWITCH_PROCESSOR = 0x3150,
    KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS = 0x315A,
    KDH_WIRE_API_QUERY_MEMORY = 0x315C,
    KDH_WIRE_API_GET_CONTEXT_EX = 0x315F,
    KDH_WIRE_API_SET_CONTEXT_EX = 0x3160,
    KDH_WIRE_API_MAXIMUM = 0x3161,

    KDH_WIRE_API_PRINT_STRING = 0x3230, /* DEBUG_IO */
    KDH_WIRE_API_GET_STRING = 0x3231,

    KDH_WIRE_API_CREATE_FILE = 0x3430,  /* FILE_IO */
    KDH_WIRE_API_READ_FILE = 0x3431,
    KDH_WIRE_API_WRITE_FILE = 0x3432,
    KDH_WIRE_API_CLOSE_FILE = 0x3433
};

/* ---- Status values -------------------------------------------------------------------------- */
#define KDH_WIRE_STATUS_SUCCESS 0x00000000u
#define KDH_WIRE_STATUS_PENDING 0x00000103u      /* what WinDbg puts in requests */
#define KDH_WIRE_STATUS_UNSUCCESSFUL 0xC0000001u
#define KDH_WIRE_STATUS_NO_SUCH_FILE 0xC000000Fu
#define KDH_WIRE_STATUS_BREAKPOINT 0x80000003u
#define KDH_WIRE_STATUS_SINGLE_STEP 0x80000004u
#define KDH_WIRE_STATUS_ACCESS_VIOLATION 0xC0000005u

#define KDH_WIRE_DBG_CONTINUE 0x00010002u
#define KDH_WIRE_DBG_EXCEPTION_HANDLED 0x00010001u
#define KDH_WIRE_DBG_EXCEPTION_NOT_HANDLED 0x80010001u

/* NewState of a state change; DbgKdAlternateStateChange may be OR-ed in. */
#define KDH_WIRE_STATE_EXCEPTION 0x3030u
#define KDH_WIRE_STATE_LOAD_SYMBOLS 0x3031u
#define KDH_WIRE_STATE_COMMAND_STRING 0x3032u
#define KDH_WIRE_STATE_ALTERNATE 0x00010000u

/* DBGKD_GET_VERSION64 flags and machine types. */
#define KDH_WIRE_VERSION_MP 0x01u
#define KDH_WIRE_VERSION_DATA 0x02u
#define KDH_WIRE_VERSION_PTR64 0x04u
#define KDH_WIRE_VERSION_NOMM 0x08u
#define KDH_WIRE_MACHINE_I386 0x014Cu
#define KDH_WIRE_MACHINE_AMD64 0x8664u

#define KDH_WIRE_REPORT_INCLUDES_SEGS 0x1u
#define KDH_WIRE_REPORT_STANDARD_CS 0x2u

/* Sizes of the fixed message headers. */
#define KDH_WIRE_MANIP_SIZE 0x38u
#define KDH_WIRE_STATE_CHANGE_SIZE 0xF0u
#define KDH_WIRE_DEBUG_IO_SIZE 0x10u
#define KDH_WIRE_FILE_IO_SIZE 0x40u
#define KDH_WIRE_CONTEXT_AMD64_SIZE 0x4D0u
#define KDH_WIRE_CONTEXT_X86_SIZE 0x2CCu
/* Largest ReadVirtualMemory transfer that fits one reply (4000 - 0x38). */
#define KDH_WIRE_READ_MAX (KDH_WIRE_PACKET_MAX - KDH_WIRE_MANIP_SIZE)

/* Only Continue2 and the state change's control report differ between x86 and AMD64. */
typedef enum kdh_wire_arch { KDH_WIRE_ARCH_AMD64 = 0, KDH_WIRE_ARCH_X86 = 1 } kdh_wire_arch_t;

/* ---- Packets ------------------------------------------------------------------------------- */

/* A decoded packet. payload points into the decoder (or the caller's buffer) and is only valid
 * until the next call on that decoder. Control packets have no payload. */
typedef struct kdh_wire_packet {
    int is_control;        /* 1: leader was 0x69696969 */
    uint16_t type;         /* KDH_WIRE_TYPE_* */
    uint16_t byte_count;   /* as on the wire; control packets may carry junk here */
    uint32_t id;
    uint32_t checksum;
    const uint8_t *payload;
    size_t payload_len;    /* 0 for control packets */
} kdh_wire_packet_t;

/* 32-bit unsigned sum of the bytes (the KD "checksum"). */
uint32_t kdh_wire_checksum(const uint8_t *p, size_t n);

/* Writes header + part1 + part2 + 0xAA into out. Returns the number of bytes written, or
 * KDH_ERANGE when the payload exceeds KDH_WIRE_PACKET_MAX or out is too small. Either part may
 * be NULL with length 0 (a manipulate header and its data are usually two parts). */
int kdh_wire_encode_data2(uint8_t *out, size_t cap, uint16_t type, uint32_t id,
                          const uint8_t *part1, size_t len1, const uint8_t *part2, size_t len2);
static inline int kdh_wire_encode_data(uint8_t *out, size_t cap, uint16_t type, uint32_t id,
                                       const uint8_t *payload, size_t len)
{
    return kdh_wire_encode_data2(out, cap, type, id, payload, len, NULL, 0);
}
/* Writes a 16-byte control packet (ACK/RESEND/RESET: byte count and checksum 0). Returns 16, or
 * KDH_ERANGE when cap < 16. */
int kdh_wire_encode_control(uint8_t *out, size_t cap, uint16_t type, uint32_t id);

/* ---- Incremental decoder ------------------------------------------------------------------- */

typedef enum kdh_wire_event_kind {
    KDH_WIRE_EV_NONE = 0,        /* input consumed, nothing complete yet */
    KDH_WIRE_EV_PACKET,          /* a well-formed data or control packet (ev.packet) */
    KDH_WIRE_EV_GARBAGE,         /* ev.count bytes skipped while hunting a leader */
    KDH_WIRE_EV_BREAKIN,         /* a 0x62 outside any packet */
    KDH_WIRE_EV_BAD_CHECKSUM,    /* data packet whose sum differs (ev.packet has the header) */
    KDH_WIRE_EV_MISSING_TRAILER, /* data packet not followed by 0xAA; that byte is re-examined */
    KDH_WIRE_EV_OVERSIZE,        /* ByteCount > 4000; the header is dropped */
    KDH_WIRE_EV_TRUNCATED        /* partial packet cut by a new leader or by a flush */
} kdh_wire_event_kind_t;

typedef struct kdh_wire_event {
    kdh_wire_event_kind_t kind;
    kdh_wire_packet_t packet; /* PACKET; header fields (no payload) for the error kinds */
    size_t count;             /* bytes dropped: GARBAGE run, or bytes of the bad packet */
} kdh_wire_event_t;

/* A garbage run is reported at the latest when it reaches this many bytes, so that a line
 * carrying only noise still shows up in the counters without waiting for a leader or flush. */
#define KDH_WIRE_GARBAGE_REPORT 1024u

/* The decoder holds at most one frame. Embed it anywhere; kdh_wire_decoder_init() resets it. */
typedef struct kdh_wire_decoder {
    int state;          /* internal */
    uint8_t lead_byte;  /* leader byte being matched (0x30 / 0x69), 0 if none */
    uint8_t lead_run;   /* how many of it seen in a row */
    size_t garbage;     /* garbage bytes not yet reported */
    size_t have;        /* bytes of the current frame in buf */
    size_t need;        /* bytes of the current frame expected in buf */
    uint8_t buf[KDH_WIRE_FRAME_MAX];
} kdh_wire_decoder_t;

void kdh_wire_decoder_init(kdh_wire_decoder_t *d);

/* Consumes bytes of buf until one event is complete or the input is exhausted, and returns the
 * number of bytes consumed (always > 0 when len > 0 unless an event was returned). ev->kind is
 * KDH_WIRE_EV_NONE when no event completed. Loop until all input is consumed:
 *     while (len) { size_t n = kdh_wire_decoder_feed(d, p, len, &ev); p += n; len -= n;
 *                   if (ev.kind != KDH_WIRE_EV_NONE) handle(&ev); }
 * The event sequence does not depend on how the stream is cut into chunks. */
size_t kdh_wire_decoder_feed(kdh_wire_decoder_t *d, const uint8_t *buf, size_t len,
                             kdh_wire_event_t *ev);

/* Ends whatever is partial (the link calls it on an inter-byte timeout): a partial packet gives
 * TRUNCATED, pending garbage (including a partial leader) gives GARBAGE. Returns 1 and fills ev
 * if there was something, else 0; call it until it returns 0 to drain both. */
int kdh_wire_decoder_flush(kdh_wire_decoder_t *d, kdh_wire_event_t *ev);

/* 1 while the decoder is inside a frame (leader seen, frame not complete). */
int kdh_wire_decoder_busy(const kdh_wire_decoder_t *d);

const char *kdh_wire_event_name(kdh_wire_event_kind_t kind);
const char *kdh_wire_type_name(uint16_t type);

/* ---- DBGKD_MANIPULATE_STATE64 (0x38 bytes, kd-protocol.md 3) --------------------------------- */

typedef struct kdh_wire_get_version {
    uint16_t major_version, minor_version;
    uint8_t protocol_version, kd_secondary_version;
    uint16_t flags, machine_type;
    uint8_t max_packet_type, max_state_change, max_manipulate, simulation;
    uint64_t kern_base, ps_loaded_module_list, debugger_data_list;
} kdh_wire_get_version_t;

typedef struct kdh_wire_manip {
    uint32_t api;
    uint16_t processor_level;
    uint16_t processor;
    uint32_t return_status;
    union {
        /* Read/WriteVirtualMemory, Read/WriteControlSpace, Read/WritePhysicalMemory */
        struct { uint64_t address; uint32_t transfer_count, actual_count; } mem;
        struct { uint32_t unused; } get_context;
        struct { uint32_t context_flags; } set_context;
        struct { uint64_t address; uint32_t handle; } write_bp;
        struct { uint32_t handle; } restore_bp;
        struct { uint32_t status; } cont;
        /* Continue2: x86 keeps 32-bit Dr7/symbol range, AMD64 64-bit ones */
        struct { uint32_t status, trace_flag; uint64_t dr7, symbol_start, symbol_end; } cont2;
        kdh_wire_get_version_t version;
        struct { uint64_t address, reserved; uint32_t address_space, flags; } query_memory;
        /* GetContextEx / SetContextEx */
        struct { uint32_t offset, byte_count, bytes_copied; } context_ex;
    } u;
    /* The 0x28 union bytes as on the wire. Decode fills it; encode uses it only for APIs it has
     * no typed layout for (so unknown requests can be echoed back unchanged). */
    uint8_t raw_u[0x28];
} kdh_wire_manip_t;

/* Writes the 0x38-byte header for m->api into out (typed fields; raw_u for unknown APIs). */
void kdh_wire_manip_encode(const kdh_wire_manip_t *m, kdh_wire_arch_t arch,
                           uint8_t out[KDH_WIRE_MANIP_SIZE]);
/* Parses the header from a payload; *data / *data_len (may be NULL) receive what follows it.
 * KDH_ECORRUPT if len < 0x38. */
int kdh_wire_manip_decode(const uint8_t *buf, size_t len, kdh_wire_arch_t arch,
                          kdh_wire_manip_t *m, const uint8_t **data, size_t *data_len,
                          kdh_err_t *err);

/* ---- DBGKD_ANY_WAIT_STATE_CHANGE (0xF0 bytes, kd-protocol.md 2) ------------------------------ */

typedef struct kdh_wire_control_report {
    uint64_t dr6, dr7;  /* 32-bit on x86 */
    uint32_t eflags;
    uint16_t instruction_count; /* clamped to 16 on decode */
    uint16_t report_flags;
    uint8_t instruction_stream[KDH_WIRE_MAXSTREAM];
    uint16_t seg_cs, seg_ds, seg_es, seg_fs;
} kdh_wire_control_report_t;

typedef struct kdh_wire_state_change {
    uint32_t new_state;
    uint16_t processor_level;
    uint16_t processor;
    uint32_t number_processors;
    uint64_t thread;
    uint64_t program_counter;
    union {
        struct {
            uint32_t code, flags;
            uint64_t record, address;
            uint32_t number_parameters;
            uint64_t information[15];
            uint32_t first_chance;
        } exception;
        struct {
            uint32_t path_name_length; /* including the NUL */
            uint64_t base_of_dll, process_id;
            uint32_t checksum, size_of_image;
            uint8_t unload_symbols;
        } load_symbols;
        struct { uint32_t flags; } command_string;
    } u;
    kdh_wire_control_report_t report;
    /* Decode only: bytes after the 0xF0 header (trace data, path, command strings). For
     * LoadSymbols, path points at the last path_name_length bytes of the payload (NULL when
     * the length is 0); it is not guaranteed to be NUL-terminated. */
    const uint8_t *extra;
    size_t extra_len;
    const uint8_t *path;
    size_t path_len;
} kdh_wire_state_change_t;

void kdh_wire_state_change_encode(const kdh_wire_state_change_t *sc, kdh_wire_arch_t arch,
                                  uint8_t out[KDH_WIRE_STATE_CHANGE_SIZE]);
/* KDH_ECORRUPT on len < 0xF0, or a LoadSymbols path longer than the bytes after the header. */
int kdh_wire_state_change_decode(const uint8_t *buf, size_t len, kdh_wire_arch_t arch,
                                 kdh_wire_state_change_t *sc, kdh_err_t *err);

/* ---- DBGKD_DEBUG_IO (0x10 bytes) and DBGKD_FILE_IO (0x40 bytes), kd-protocol.md 3.6 ---------- */

typedef struct kdh_wire_debug_io {
    uint32_t api;              /* PRINT_STRING or GET_STRING */
    uint16_t processor_level;
    uint16_t processor;
    uint32_t length;           /* LengthOfString / LengthOfPromptString @8 */
    uint32_t length_read;      /* GetString.LengthOfStringRead @0xC (0 for prints) */
} kdh_wire_debug_io_t;

void kdh_wire_debug_io_encode(const kdh_wire_debug_io_t *io, uint8_t out[KDH_WIRE_DEBUG_IO_SIZE]);
int kdh_wire_debug_io_decode(const uint8_t *buf, size_t len, kdh_wire_debug_io_t *io,
                             const uint8_t **data, size_t *data_len, kdh_err_t *err);

typedef struct kdh_wire_file_io {
    uint32_t api;
    uint32_t status;
    /* CreateFile layout of the union @8; raw_u keeps the 0x38 union bytes as on the wire. */
    uint32_t desired_access, file_attributes, share_access, create_disposition, create_options;
    uint64_t handle, length;
    uint8_t raw_u[0x38];
} kdh_wire_file_io_t;

/* Writes the CreateFile fields for CREATE_FILE, raw_u otherwise. */
void kdh_wire_file_io_encode(const kdh_wire_file_io_t *io, uint8_t out[KDH_WIRE_FILE_IO_SIZE]);
int kdh_wire_file_io_decode(const uint8_t *buf, size_t len, kdh_wire_file_io_t *io,
                            const uint8_t **data, size_t *data_len, kdh_err_t *err);

#endif
