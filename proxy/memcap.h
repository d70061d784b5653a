/*
 * memcap: the global memory budget (limits.max_memory).  The main thread
 * samples the process's resident memory every MEMCAP_SAMPLE_MS and raises a
 * process-wide flag while it is over budget; workers read the flag (one
 * relaxed load, no lock) when they accept and refuse the connection rather
 * than grow.  The flag drops again below 90% of the budget.
 *
 * It also hands memory back to the system: the allocator keeps what the
 * workers free resident, so after a burst of connections moat would stay
 * at its peak, and over a budget it once crossed, for good.
 */
#ifndef MOAT_MEMCAP_H
#define MOAT_MEMCAP_H

#include <stdint.h>

#include <uv.h>

#define MEMCAP_SAMPLE_MS 100

/* 0: no budget.  Called by main at start and on reloads. */
void memcap_set_budget(uint64_t bytes);
/* Connections open in the whole process: when a burst of them ends (or
 * while over budget) the free heap is handed back. */
typedef uint64_t (*memcap_active_fn)(void *ctx);
int memcap_start(uv_loop_t *loop, memcap_active_fn active, void *ctx);
void memcap_stop(void);
/* 1 while over budget: new connections are refused. */
int memcap_over(void);
uint64_t memcap_resident(void);
/* Reads the resident size now, for callers without the sampling loop. */
uint64_t memcap_resident_now(void);
uint64_t memcap_budget(void);

#endif
