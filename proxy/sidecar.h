/*
 * sidecar: the configuration for the simple sidecar case, from command-line
 * flags and environment variables instead of a YAML file.  It becomes YAML
 * text that goes through the same loader and checks as a file, and errors
 * name the variable or flag that caused them.
 *
 *   MOAT_UPSTREAM  --upstream  the app: "127.0.0.1:3000" or "app:3000" (turns this mode on)
 *   MOAT_LISTEN    --listen    HTTPS address (default "0.0.0.0:8443")
 *   MOAT_CERT      --cert      PEM certificate chain (default: a self-signed one for localhost)
 *   MOAT_KEY       --key       PEM private key
 *   MOAT_ADMIN     --admin     admin endpoint (default "127.0.0.1:9901"; "off" for none)
 *   MOAT_REDIRECT  --redirect  plain-HTTP address answering 308 to HTTPS (default: none)
 *   MOAT_TICKET_KEY_FILE       session-ticket key file shared by replicas
 *   MOAT_WORKERS               event-loop threads (default "auto")
 *   MOAT_WATCH                 "true"/"false": reload when the certificate changes
 *                              (default true with MOAT_CERT)
 *   MOAT_ACCESS_LOG            stdout | stderr | a path | "off" (default stdout)
 */
#ifndef MOAT_SIDECAR_H
#define MOAT_SIDECAR_H

#include <stddef.h>

#include "config.h"

/* Flags given on the command line; NULL when absent (the environment then
 * decides). */
struct sidecar_flags {
    const char *upstream;
    const char *listen;
    const char *cert;
    const char *key;
    const char *admin;
    const char *redirect;
};

/*
 * Fills src when the sidecar mode is asked for (an upstream is given).
 * Returns 1 then, 0 when it is not asked for, -1 with err set when the
 * settings cannot form a configuration.  src's text lives until exit.
 */
int sidecar_source(const struct sidecar_flags *flags, struct cfg_source *src, char *err,
                   size_t errlen);

/*
 * The sidecar variables set when the sidecar mode is off (no upstream),
 * which then do nothing: their names, ", " between them, in out.  An empty
 * MOAT_UPSTREAM counts (MOAT_UPSTREAM=$UNSET_VARIABLE); MOAT_ADMIN does
 * not, as --healthcheck reads it beside a YAML file.  Returns how many.
 */
size_t sidecar_unused_variables(char *out, size_t len);

#endif
