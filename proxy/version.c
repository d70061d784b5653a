/*
 * version: library versions.  Reads only version constants and functions.
 */
#include "version.h"

#include <llhttp.h>
#include <uv.h>
#include <yaml.h>

#include "tls.h"

void version_print(FILE *out)
{
    fprintf(out, "moat %s\n", MOAT_VERSION);
    fprintf(out, "libuv %s\n", uv_version_string());
    fprintf(out, "wolfSSL %s, %s\n", tls_library_version(), tls_library_build());
    fprintf(out, "llhttp %d.%d.%d (strict mode)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
            LLHTTP_VERSION_PATCH);
    fprintf(out, "libyaml %s\n", yaml_get_version_string());
}
