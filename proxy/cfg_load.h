/*
 * cfg_load: the table-driven YAML walker behind config.c.  A section table
 * lists each key with its type, where its value goes, its default and its
 * bounds; the walker checks types, applies defaults, records positions and
 * collects errors as "file:line:col: message".  It knows nothing of what the
 * keys mean: config.c owns the tables and the checks across keys.
 */
#ifndef MOAT_CFG_LOAD_H
#define MOAT_CFG_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"

enum cfg_type {
    CFG_T_UINT = 0,      /* uint64_t, bounded by min/max */
    CFG_T_UINT_OR_AUTO,  /* uint64_t; "auto" stores 0 */
    CFG_T_DURATION,      /* uint64_t milliseconds */
    CFG_T_SIZE,          /* uint64_t bytes */
    CFG_T_BOOL,          /* int */
    CFG_T_STRING,        /* char * */
    CFG_T_PATH,          /* char *, resolved against the file's directory */
    CFG_T_ENUM,          /* char *, one of enum_names */
    CFG_T_STRING_LIST,   /* char **, count at count_off */
    CFG_T_SECTION,       /* nested struct at off */
    CFG_T_SECTION_SEQ,   /* array of section->size elements, count at count_off */
    CFG_T_SECTION_MAP,   /* mapping name -> element; name at section->name_off */
};

enum {
    CFG_F_REQUIRED = 1u << 0,
    CFG_F_NULLABLE = 1u << 1,    /* null is accepted and stores NULL */
    CFG_F_POS = 1u << 3,         /* store the value's position at pos_off */
    CFG_F_PRESENT = 1u << 4,     /* store 1 at present_off when given */
    CFG_F_ITEM_POS = 1u << 5,    /* STRING_LIST: positions array at item_pos_off */
};

struct cfg_section;

struct cfg_field {
    const char *key;
    enum cfg_type type;
    size_t off;
    const char *def;            /* default, written as in YAML; NULL: none */
    unsigned flags;
    uint64_t min, max;          /* numbers; max 0 means no upper bound */
    const char *const *enum_names; /* NULL-terminated */
    const struct cfg_section *section;
    size_t count_off;
    size_t pos_off;
    size_t present_off;
    size_t item_pos_off;
};

struct cfg_section {
    const char *what;           /* for messages: "listener", "upstream" */
    size_t size;                /* element size for SEQ and MAP */
    const struct cfg_field *fields;
    size_t nfields;
    int has_pos;
    size_t pos_off;             /* struct cfg_pos of the element */
    int has_name;
    size_t name_off;            /* MAP: char * that receives the key */
};

struct cfg_loader {
    const char *file;
    const char *dir;
    yaml_document_t *doc;
    void *arena;
    char *err;
    size_t errlen;
    size_t errpos;
    unsigned nerrors;
    unsigned budget;            /* nodes left to visit (alias bombs) */
    struct cfg_pos empty_pos;   /* where a section given as null was written */
};

void cfg_error(struct cfg_loader *ld, struct cfg_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct cfg_pos cfg_node_pos(const yaml_node_t *node);

/* Arena allocation: zeroed, freed with the whole configuration. */
void *cfg_arena_new(void);
void cfg_arena_free(void *arena);
void *cfg_alloc(void *arena, size_t size);
char *cfg_strdup(void *arena, const char *s);

/*
 * Parses text with libyaml into doc.  Returns 0, or -1 after reporting the
 * syntax error through ld.
 */
int cfg_yaml_parse(struct cfg_loader *ld, const char *text, size_t len,
                   yaml_document_t *doc);
/*
 * Fills base (a struct laid out as section describes) from node, a mapping
 * or NULL (absent: defaults only).  Returns the number of errors added.
 */
unsigned cfg_load_section(struct cfg_loader *ld, const struct cfg_section *section,
                          yaml_node_t *node, void *base);

#endif
