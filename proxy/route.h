/*
 * route: picks the route for a request from the configuration's table.
 * Pure: reads the configuration, allocates nothing.
 *
 * Order: routes for the exact host, then "*.suffix" wildcards (the longest
 * suffix first), then routes with no host.  Within a tier the longest
 * matching path prefix wins; a tier with no matching path falls through to
 * the next one.
 */
#ifndef MOAT_ROUTE_H
#define MOAT_ROUTE_H

#include <stddef.h>

#include "config.h"
#include "strutil.h"

#define ROUTE_MAX_HOST 255

/*
 * Lower-cases a Host header value into out (at least ROUTE_MAX_HOST + 1
 * bytes), dropping a port and a trailing dot.  Returns the length, or -1 if
 * it is not a valid host (reg-name, IPv4 or [IPv6], optional :port).
 */
int route_normalize_host(struct span host, char *out);

/* host: normalized (may be empty: HTTP/1.0 without Host); path: no query.
 * cfg's route paths are normalized as cfg_load leaves them. */
const struct cfg_route *route_match(const struct cfg *cfg, struct span host, struct span path);

#endif
