/* host.h: a hand-driven KD host for testing kdsim's target side without I/O. Packets to the
 * target are built with kdh_wire's encoders from literal fields; the target's frames are split
 * with kdh_wire's decoder (code independent of the target's own framer). Time is simulated. */
#ifndef KDSIM_TEST_HOST_H
#define KDSIM_TEST_HOST_H

#include <stdint.h>

#include "kdh/wire.h"
#include "target.h"

#define HOST_MAX_PKTS 256

typedef struct host_pkt {
    int is_control;
    uint16_t type;
    uint32_t id;
    uint8_t payload[KDH_WIRE_PACKET_MAX];
    size_t len;
} host_pkt_t;

typedef struct host {
    sim_machine_t *m;
    sim_target_t *t;
    kdh_wire_arch_t arch;
    uint64_t now;
    uint32_t next_id; /* id of the host's next data packet */
    kdh_wire_decoder_t dec;
    host_pkt_t pkts[HOST_MAX_PKTS];
    int n;            /* packets received since the last host_clear */
    int bad;          /* decoder errors seen */
    int ack_prints;   /* ACK DEBUG_IO prints as they come (default 1) */
    int prints;       /* prints received */
} host_t;

void host_setup(host_t *h, sim_arch_t arch, int cpus, const sim_target_opts_t *o);
void host_teardown(host_t *h);
void host_clear(host_t *h);
void host_pump(host_t *h);
/* Advances time by dt_ns and lets the target run up to budget_ns of simulated time. */
void host_tick(host_t *h, uint64_t dt_ns, uint64_t budget_ns);
void host_raw(host_t *h, const uint8_t *b, size_t n);
void host_control(host_t *h, uint16_t type, uint32_t id);
/* Sends a manipulate request with id (does not touch next_id). */
void host_manip_id(host_t *h, const kdh_wire_manip_t *m, const uint8_t *data, size_t dlen, uint32_t id);
/* Full exchange: request with next_id, expects ACK + reply, ACKs the reply. Returns the reply
 * packet (decoded into *r and its data) or fails the test. */
const host_pkt_t *host_request(host_t *h, const kdh_wire_manip_t *m, const uint8_t *data, size_t dlen,
                               kdh_wire_manip_t *r, const uint8_t **rdata, size_t *rdlen);
/* Sends a request that has no reply (Continue, Continue2, ...) and expects only its ACK. */
void host_no_reply(host_t *h, const kdh_wire_manip_t *m);
/* A request header for api with STATUS_PENDING, as WinDbg fills it. */
kdh_wire_manip_t host_req(uint32_t api);
/* Continue2 (DBG_CONTINUE, "no change" symbol range), asserting that the target then runs. */
void host_cont2(host_t *h, uint32_t trace);
/* Index of the first packet of type (data or control) at or after from, or -1. */
int host_find(const host_t *h, int from, int is_control, uint16_t type);
/* Runs until a state change arrives (up to max_ticks of 1 ms); ACKs it; decodes into sc. */
const host_pkt_t *host_wait_state_change(host_t *h, int max_ticks, kdh_wire_state_change_t *sc);
/* Boots through both load-symbols (ACK + Continue each) until the target runs. */
void host_boot(host_t *h);
/* Sends 'b' and waits for the break-in state change (ACKed). */
void host_break(host_t *h, kdh_wire_state_change_t *sc);

#endif
