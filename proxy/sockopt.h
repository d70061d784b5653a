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

/* 1 when bytes the peer sent wait unread in the socket (or it cannot
 * tell): closing now would answer them with a reset. */
int sockopt_has_unread_input(uv_tcp_t *tcp);

#endif
