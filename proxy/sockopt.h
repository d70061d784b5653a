/*
 * sockopt: TCP options moat sets on a connection after accept or connect.
 * Touches only the socket it is given.
 */
#ifndef MOAT_SOCKOPT_H
#define MOAT_SOCKOPT_H

#include <uv.h>

/* Sends the ACK Linux is holding back (up to 40 ms) now.  A peer with
 * Nagle on sends nothing more until its last segment is ACKed. */
void sockopt_ack_now(uv_tcp_t *tcp);

#endif
