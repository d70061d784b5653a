/*
 * cfg_load: walks a libyaml document against section tables.  Owns the
 * configuration arena.  Knows YAML and the table format, not moat's keys.
 */
#include "cfg_load.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strutil.h"

#define CFG_MAX_ERRORS 32

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(max_align_t) char data[];
};

struct arena {
    struct arena_block *blocks;
};

void *cfg_arena_new(void)
{
    return calloc(1, sizeof(struct arena));
}

void cfg_arena_free(void *arena)
{
    struct arena *a = arena;
    if (a == NULL)
        return;
    while (a->blocks != NULL) {
        struct arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    free(a);
}

void *cfg_alloc(void *arena, size_t size)
{
    struct arena *a = arena;
    size = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    struct arena_block *b = a->blocks;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > 8192 ? size : 8192;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            abort(); /* configuration loading has no way to degrade */
        b->used = 0;
        b->cap = cap;
        b->next = a->blocks;
        a->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *cfg_strdup(void *arena, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cfg_alloc(arena, n);
    memcpy(p, s, n);
    return p;
}

struct cfg_pos cfg_node_pos(const yaml_node_t *node)
{
    if (node == NULL)
        return (struct cfg_pos){0, 0};
    return (struct cfg_pos){(unsigned)node->start_mark.line + 1,
                            (unsigned)node->start_mark.column + 1};
}

void cfg_error(struct cfg_loader *ld, struct cfg_pos pos, const char *fmt, ...)
{
    ld->nerrors++;
    if (ld->nerrors > CFG_MAX_ERRORS || ld->errpos + 1 >= ld->errlen)
        return;
    char *p = ld->err + ld->errpos;
    size_t room = ld->errlen - ld->errpos;
    int n;
    if (pos.line > 0)
        n = snprintf(p, room, "%s%s:%u:%u: ", ld->errpos ? "\n" : "", ld->file, pos.line,
                     pos.col);
    else
        n = snprintf(p, room, "%s%s: ", ld->errpos ? "\n" : "", ld->file);
    if (n < 0 || (size_t)n >= room) {
        ld->errpos = ld->errlen - 1;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(p + n, room - (size_t)n, fmt, ap);
    va_end(ap);
    /* One line per error: a value quoted from the file may hold a newline
     * or other control bytes. */
    for (char *q = p + n; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    size_t total = (size_t)n + (m > 0 ? (size_t)m : 0);
    ld->errpos += total < room ? total : room - 1;
}

int cfg_yaml_parse(struct cfg_loader *ld, const char *text, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        cfg_error(ld, (struct cfg_pos){0, 0}, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, doc);
    if (!ok) {
        struct cfg_pos pos = {(unsigned)parser.problem_mark.line + 1,
                              (unsigned)parser.problem_mark.column + 1};
        cfg_error(ld, pos, "YAML syntax error: %s%s%s",
                  parser.problem ? parser.problem : "unknown",
                  parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -1;
    }
    /* A second document would be silently ignored: refuse it, broken or not. */
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
        yaml_node_t *root = yaml_document_get_root_node(&extra);
        if (root != NULL)
            cfg_error(ld, cfg_node_pos(root), "only one YAML document is allowed");
        yaml_document_delete(&extra);
    } else {
        struct cfg_pos pos = {(unsigned)parser.problem_mark.line + 1,
                              (unsigned)parser.problem_mark.column + 1};
        cfg_error(ld, pos, "only one YAML document is allowed (and the next one is broken: %s)",
                  parser.problem ? parser.problem : "unknown");
    }
    yaml_parser_delete(&parser);
    if (ld->nerrors) {
        yaml_document_delete(doc);
        return -1;
    }
    return 0;
}

static yaml_node_t *node_at(struct cfg_loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

static int is_null(const yaml_node_t *n)
{
    if (n == NULL)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* YAML 1.1's booleans, which PyYAML and most tools still read as such. */
static int is_yaml_boolean(const yaml_node_t *n)
{
    static const char *const words[] = {"true", "True", "TRUE", "false", "False", "FALSE",
                                        "yes",  "Yes",  "YES",  "no",    "No",    "NO",
                                        "on",   "On",   "ON",   "off",   "Off",   "OFF",
                                        "y",    "Y",    "n",    "N"};
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp((const char *)n->data.scalar.value, words[i]) == 0)
            return 1;
    return 0;
}

static const char *type_name(enum cfg_type t);

/* 1 (reported) when a scalar YAML reads as something else than the string
 * it spells: hsts: false sent "Strict-Transport-Security: false", and
 * access: off (or !!bool "false") wrote to a file of that name. */
static int not_a_string(struct cfg_loader *ld, const struct cfg_field *f, yaml_node_t *val,
                        struct cfg_pos pos)
{
    const char *v = (const char *)val->data.scalar.value;
    const char *tag = (const char *)val->tag;
    if (is_yaml_boolean(val)) {
        cfg_error(ld, pos, "\"%s\": expected %s, got the YAML boolean %s (quote it to mean "
                  "the word%s)", f->key, type_name(f->type), v,
                  (f->flags & CFG_F_NULLABLE) ? "; null for none" : "");
        return 1;
    }
    if (tag != NULL && strcmp(tag, YAML_STR_TAG) != 0) {
        cfg_error(ld, pos, "\"%s\": expected %s, got \"%s\" tagged %s", f->key,
                  type_name(f->type), v, tag);
        return 1;
    }
    /* access: > kept the line break in the file's name. */
    size_t n = strlen(v);
    yaml_scalar_style_t style = val->data.scalar.style;
    if (n > 0 && v[n - 1] == '\n' &&
        (style == YAML_LITERAL_SCALAR_STYLE || style == YAML_FOLDED_SCALAR_STYLE)) {
        cfg_error(ld, pos, "\"%s\": the block scalar keeps its final line break; write %s- "
                  "(or quote the value)", f->key, style == YAML_LITERAL_SCALAR_STYLE ? "|" : ">");
        return 1;
    }
    return 0;
}

static const char *type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_T_UINT: return "a non-negative integer";
    case CFG_T_UINT_OR_AUTO: return "\"auto\" or a positive integer";
    case CFG_T_DURATION: return "a duration such as 250ms, 10s, 5m or 12h";
    case CFG_T_SIZE: return "a size such as 512, 16k or 1m";
    case CFG_T_BOOL: return "true or false";
    case CFG_T_STRING: case CFG_T_PATH: case CFG_T_ENUM: return "a string";
    case CFG_T_STRING_LIST: return "a list of strings";
    case CFG_T_SECTION: case CFG_T_SECTION_MAP: return "a mapping";
    case CFG_T_SECTION_SEQ: return "a list of mappings";
    }
    return "?";
}

#define FIELD_PTR(base, off, type) ((type *)((char *)(base) + (off)))

/* A bound written the way the field is: 10ms, 1h, 16k, 1m or 256. */
static void format_bound(enum cfg_type t, uint64_t v, char *buf, size_t len)
{
    struct unit {
        uint64_t n;
        const char *suffix;
    };
    static const struct unit duration_units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    static const struct unit size_units[] = {{1024 * 1024, "m"}, {1024, "k"}, {1, ""}};
    static const struct unit plain[] = {{1, ""}};
    const struct unit *u = plain;
    size_t n = 1;
    if (t == CFG_T_DURATION) {
        u = duration_units;
        n = sizeof(duration_units) / sizeof(duration_units[0]);
    } else if (t == CFG_T_SIZE) {
        u = size_units;
        n = sizeof(size_units) / sizeof(size_units[0]);
    }
    size_t i = v == 0 ? n - 1 : 0;
    while (v % u[i].n != 0)
        i++;
    snprintf(buf, len, "%llu%s", (unsigned long long)(v / u[i].n), u[i].suffix);
}

static int check_bounds(struct cfg_loader *ld, const struct cfg_field *f, struct cfg_pos pos,
                        uint64_t v, const char *text)
{
    if (v < f->min || (f->max != 0 && v > f->max)) {
        char lo[32], hi[32];
        format_bound(f->type, f->min, lo, sizeof(lo));
        format_bound(f->type, f->max, hi, sizeof(hi));
        if (f->max != 0)
            cfg_error(ld, pos, "\"%s\": %s is out of range (%s to %s)", f->key, text, lo, hi);
        else
            cfg_error(ld, pos, "\"%s\": %s is out of range (at least %s)", f->key, text, lo);
        return -1;
    }
    return 0;
}

static char *resolve_path(struct cfg_loader *ld, const char *v)
{
    if (v[0] == '/' || ld->dir == NULL)
        return cfg_strdup(ld->arena, v);
    size_t n = strlen(ld->dir) + strlen(v) + 2;
    char *p = cfg_alloc(ld->arena, n);
    snprintf(p, n, "%s/%s", ld->dir, v);
    return p;
}

/* Converts one scalar (from the file or a default) into *dst. */
static int convert_scalar(struct cfg_loader *ld, const struct cfg_field *f, const char *v,
                          struct cfg_pos pos, void *dst)
{
    uint64_t n;
    switch (f->type) {
    case CFG_T_UINT_OR_AUTO:
        if (strcmp(v, "auto") == 0) {
            *(uint64_t *)dst = 0;
            return 0;
        }
        /* fall through */
    case CFG_T_UINT:
        if (parse_u64(v, strlen(v), &n) != 0)
            goto bad_type;
        if (check_bounds(ld, f, pos, n, v) != 0)
            return -1;
        *(uint64_t *)dst = n;
        return 0;
    case CFG_T_DURATION:
        if (parse_duration_ms(v, &n) != 0)
            goto bad_type;
        if (check_bounds(ld, f, pos, n, v) != 0)
            return -1;
        *(uint64_t *)dst = n;
        return 0;
    case CFG_T_SIZE:
        if (parse_size(v, &n) != 0)
            goto bad_type;
        if (check_bounds(ld, f, pos, n, v) != 0)
            return -1;
        *(uint64_t *)dst = n;
        return 0;
    case CFG_T_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0)
            *(int *)dst = 1;
        else if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 ||
                 strcmp(v, "FALSE") == 0)
            *(int *)dst = 0;
        else
            goto bad_type;
        return 0;
    case CFG_T_STRING:
        *(char **)dst = cfg_strdup(ld->arena, v);
        return 0;
    case CFG_T_PATH:
        if (v[0] == '\0')
            goto bad_type;
        *(char **)dst = resolve_path(ld, v);
        return 0;
    case CFG_T_ENUM:
        for (const char *const *e = f->enum_names; *e != NULL; e++) {
            if (strcmp(v, *e) == 0) {
                *(char **)dst = cfg_strdup(ld->arena, v);
                return 0;
            }
        }
        {
            char options[256];
            size_t o = 0;
            options[0] = '\0';
            for (const char *const *e = f->enum_names; *e != NULL && o < sizeof(options); e++)
                o += (size_t)snprintf(options + o, sizeof(options) - o, "%s\"%s\"",
                                      o ? ", " : "", *e);
            cfg_error(ld, pos, "\"%s\": \"%s\" is not one of %s", f->key, v, options);
        }
        return -1;
    default:
        break;
    }
bad_type:
    cfg_error(ld, pos, "\"%s\": expected %s, got \"%s\"", f->key, type_name(f->type), v);
    return -1;
}

static unsigned load_field(struct cfg_loader *ld, const struct cfg_field *f,
                           yaml_node_t *val, struct cfg_pos key_pos, void *base);

static int take_budget(struct cfg_loader *ld, yaml_node_t *node)
{
    if (ld->budget == 0)
        return -1;
    if (--ld->budget == 0) {
        cfg_error(ld, cfg_node_pos(node),
                  "configuration too large (too many nodes; recursive aliases?)");
        return -1;
    }
    return 0;
}

static unsigned load_string_list(struct cfg_loader *ld, const struct cfg_field *f,
                                 yaml_node_t *val, void *base)
{
    unsigned before = ld->nerrors;
    if (val->type != YAML_SEQUENCE_NODE) {
        cfg_error(ld, cfg_node_pos(val), "\"%s\": expected %s", f->key, type_name(f->type));
        return 1;
    }
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    char **items = cfg_alloc(ld->arena, (n + 1) * sizeof(char *));
    struct cfg_pos *positions = cfg_alloc(ld->arena, (n + 1) * sizeof(struct cfg_pos));
    size_t k = 0;
    for (yaml_node_item_t *it = val->data.sequence.items.start;
         it < val->data.sequence.items.top; it++) {
        yaml_node_t *item = node_at(ld, *it);
        if (take_budget(ld, item) != 0)
            return ld->nerrors - before;
        if (item->type != YAML_SCALAR_NODE || is_null(item)) {
            cfg_error(ld, cfg_node_pos(item), "\"%s\": list items must be strings", f->key);
            continue;
        }
        if (f->flags & CFG_F_ITEM_POS)
            positions[k] = cfg_node_pos(item);
        items[k++] = cfg_strdup(ld->arena, (const char *)item->data.scalar.value);
    }
    if (f->flags & CFG_F_ITEM_POS)
        *FIELD_PTR(base, f->item_pos_off, struct cfg_pos *) = positions;
    *FIELD_PTR(base, f->off, char **) = items;
    *FIELD_PTR(base, f->count_off, size_t) = k;
    return ld->nerrors - before;
}

static unsigned load_section_seq(struct cfg_loader *ld, const struct cfg_field *f,
                                 yaml_node_t *val, void *base)
{
    unsigned before = ld->nerrors;
    if (val->type != YAML_SEQUENCE_NODE) {
        cfg_error(ld, cfg_node_pos(val), "\"%s\": expected %s", f->key, type_name(f->type));
        return 1;
    }
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    char *array = cfg_alloc(ld->arena, (n ? n : 1) * f->section->size);
    size_t k = 0;
    for (yaml_node_item_t *it = val->data.sequence.items.start;
         it < val->data.sequence.items.top; it++, k++) {
        yaml_node_t *item = node_at(ld, *it);
        if (item->type != YAML_MAPPING_NODE) {
            cfg_error(ld, cfg_node_pos(item), "\"%s\": each %s must be a mapping", f->key,
                      f->section->what);
            continue;
        }
        cfg_load_section(ld, f->section, item, array + k * f->section->size);
    }
    *FIELD_PTR(base, f->off, void *) = array;
    *FIELD_PTR(base, f->count_off, size_t) = k;
    return ld->nerrors - before;
}

static unsigned load_section_map(struct cfg_loader *ld, const struct cfg_field *f,
                                 yaml_node_t *val, void *base)
{
    unsigned before = ld->nerrors;
    if (val->type != YAML_MAPPING_NODE) {
        cfg_error(ld, cfg_node_pos(val), "\"%s\": expected %s", f->key, type_name(f->type));
        return 1;
    }
    size_t n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
    char *array = cfg_alloc(ld->arena, (n ? n : 1) * f->section->size);
    size_t k = 0;
    for (yaml_node_pair_t *pr = val->data.mapping.pairs.start;
         pr < val->data.mapping.pairs.top; pr++) {
        yaml_node_t *key = node_at(ld, pr->key), *item = node_at(ld, pr->value);
        if (key->type != YAML_SCALAR_NODE || is_null(key)) {
            cfg_error(ld, cfg_node_pos(key), "\"%s\": names must be strings", f->key);
            continue;
        }
        const char *name = (const char *)key->data.scalar.value;
        for (yaml_node_pair_t *q = val->data.mapping.pairs.start; q < pr; q++) {
            yaml_node_t *other = node_at(ld, q->key);
            if (other->type == YAML_SCALAR_NODE &&
                strcmp((const char *)other->data.scalar.value, name) == 0)
                cfg_error(ld, cfg_node_pos(key), "%s \"%s\" is defined twice",
                          f->section->what, name);
        }
        if (item->type != YAML_MAPPING_NODE) {
            cfg_error(ld, cfg_node_pos(item), "%s \"%s\" must be a mapping", f->section->what,
                      name);
            continue;
        }
        char *elem = array + k * f->section->size;
        *FIELD_PTR(elem, f->section->name_off, char *) = cfg_strdup(ld->arena, name);
        cfg_load_section(ld, f->section, item, elem);
        k++;
    }
    *FIELD_PTR(base, f->off, void *) = array;
    *FIELD_PTR(base, f->count_off, size_t) = k;
    return ld->nerrors - before;
}

static void apply_default(struct cfg_loader *ld, const struct cfg_field *f, void *base)
{
    void *dst = FIELD_PTR(base, f->off, void);
    switch (f->type) {
    case CFG_T_SECTION:
        /* An optional section that is absent stays off: its required keys
         * are required only when it is given. */
        if (f->flags & CFG_F_PRESENT)
            return;
        cfg_load_section(ld, f->section, NULL, dst);
        return;
    case CFG_T_STRING_LIST: {
        if (f->def == NULL)
            return;
        /* Defaults for lists are comma-separated. */
        size_t n = 1;
        for (const char *c = f->def; *c; c++)
            n += *c == ',';
        char **items = cfg_alloc(ld->arena, (n + 1) * sizeof(char *));
        char *copy = cfg_strdup(ld->arena, f->def), *save = NULL;
        size_t k = 0;
        for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
            items[k++] = t;
        *(char ***)dst = items;
        *FIELD_PTR(base, f->count_off, size_t) = k;
        return;
    }
    case CFG_T_SECTION_SEQ:
    case CFG_T_SECTION_MAP:
        return;
    default:
        if (f->def != NULL)
            convert_scalar(ld, f, f->def, (struct cfg_pos){0, 0}, dst);
        return;
    }
}

static unsigned load_field(struct cfg_loader *ld, const struct cfg_field *f,
                           yaml_node_t *val, struct cfg_pos key_pos, void *base)
{
    unsigned before = ld->nerrors;
    struct cfg_pos pos = cfg_node_pos(val);
    void *dst = FIELD_PTR(base, f->off, void);

    if (f->flags & CFG_F_POS)
        *FIELD_PTR(base, f->pos_off, struct cfg_pos) = pos;
    if (is_null(val)) {
        if (f->flags & CFG_F_NULLABLE) {
            if (f->type == CFG_T_STRING_LIST || f->type == CFG_T_SECTION_SEQ)
                *FIELD_PTR(base, f->count_off, size_t) = 0;
            if (f->type != CFG_T_SECTION)
                memset(dst, 0, sizeof(void *));
            else
                apply_default(ld, f, base);
            return 0;
        }
        if (f->type == CFG_T_SECTION) {
            /* "tls:" with nothing under it means "all defaults". */
            if (f->flags & CFG_F_PRESENT)
                *FIELD_PTR(base, f->present_off, int) = 1;
            struct cfg_pos outer = ld->empty_pos;
            ld->empty_pos = key_pos; /* its missing keys are reported here */
            cfg_load_section(ld, f->section, NULL, dst);
            ld->empty_pos = outer;
            return ld->nerrors - before;
        }
        cfg_error(ld, pos.line ? pos : key_pos, "\"%s\": expected %s, got null", f->key,
                  type_name(f->type));
        return 1;
    }
    if (f->flags & CFG_F_PRESENT)
        *FIELD_PTR(base, f->present_off, int) = 1;

    switch (f->type) {
    case CFG_T_STRING_LIST:
        return load_string_list(ld, f, val, base);
    case CFG_T_SECTION_SEQ:
        return load_section_seq(ld, f, val, base);
    case CFG_T_SECTION_MAP:
        return load_section_map(ld, f, val, base);
    case CFG_T_SECTION:
        if (val->type != YAML_MAPPING_NODE) {
            cfg_error(ld, pos, "\"%s\": expected %s", f->key, type_name(f->type));
            return 1;
        }
        return cfg_load_section(ld, f->section, val, dst);
    default:
        if (val->type != YAML_SCALAR_NODE) {
            cfg_error(ld, pos, "\"%s\": expected %s", f->key, type_name(f->type));
            return 1;
        }
        if ((f->type == CFG_T_STRING || f->type == CFG_T_PATH) && not_a_string(ld, f, val, pos))
            return 1;
        convert_scalar(ld, f, (const char *)val->data.scalar.value, pos, dst);
        return ld->nerrors - before;
    }
}

static void report_unknown_key(struct cfg_loader *ld, const struct cfg_section *s,
                               yaml_node_t *key, const char *name)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; i < s->nfields; i++) {
        unsigned d = edit_distance(name, s->fields[i].key, 2);
        if (d < best_d) {
            best_d = d;
            best = s->fields[i].key;
        }
    }
    if (best != NULL)
        cfg_error(ld, cfg_node_pos(key), "unknown key \"%s\" in %s; did you mean \"%s\"?",
                  name, s->what, best);
    else
        cfg_error(ld, cfg_node_pos(key), "unknown key \"%s\" in %s", name, s->what);
}

unsigned cfg_load_section(struct cfg_loader *ld, const struct cfg_section *s,
                          yaml_node_t *node, void *base)
{
    unsigned before = ld->nerrors;
    if (s->has_pos)
        *FIELD_PTR(base, s->pos_off, struct cfg_pos) = cfg_node_pos(node);
    if (node != NULL && take_budget(ld, node) != 0)
        return ld->nerrors - before;

    yaml_node_pair_t *start = NULL, *top = NULL;
    if (node != NULL) {
        start = node->data.mapping.pairs.start;
        top = node->data.mapping.pairs.top;
    }
    /* Every key in the file must be known, and given once. */
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *key = node_at(ld, p->key);
        if (key->type != YAML_SCALAR_NODE) {
            cfg_error(ld, cfg_node_pos(key), "keys in %s must be strings", s->what);
            continue;
        }
        const char *name = (const char *)key->data.scalar.value;
        size_t i;
        for (i = 0; i < s->nfields; i++)
            if (strcmp(s->fields[i].key, name) == 0)
                break;
        if (i == s->nfields) {
            report_unknown_key(ld, s, key, name);
            continue;
        }
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *other = node_at(ld, q->key);
            if (other->type == YAML_SCALAR_NODE &&
                strcmp((const char *)other->data.scalar.value, name) == 0)
                cfg_error(ld, cfg_node_pos(key), "key \"%s\" is given twice in %s", name,
                          s->what);
        }
    }
    for (size_t i = 0; i < s->nfields; i++) {
        const struct cfg_field *f = &s->fields[i];
        yaml_node_pair_t *found = NULL;
        for (yaml_node_pair_t *p = start; p < top; p++) {
            yaml_node_t *key = node_at(ld, p->key);
            if (key->type == YAML_SCALAR_NODE &&
                strcmp((const char *)key->data.scalar.value, f->key) == 0) {
                found = p;
                break;
            }
        }
        if (found == NULL) {
            if (f->flags & CFG_F_REQUIRED)
                cfg_error(ld, node ? cfg_node_pos(node) : ld->empty_pos,
                          "%s: missing required key \"%s\"", s->what, f->key);
            else
                apply_default(ld, f, base);
            continue;
        }
        yaml_node_t *key = node_at(ld, found->key);
        load_field(ld, f, node_at(ld, found->value), cfg_node_pos(key), base);
    }
    return ld->nerrors - before;
}
