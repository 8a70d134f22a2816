/* Templates (CONTRACT.md section 3): in a command's "data", a string that
 * is exactly "$.path" is replaced by the value at that path in the saga
 * context; "$$..." stands for the literal "$..."; every other value is
 * copied as it is.
 *
 * Path grammar: "$" then one or more parts, the first a key: ".key" with
 * key [A-Za-z0-9_-]+, or "[index]" with index [0-9]{1,9}. A path has no
 * value when a part is missing, an index is out of range, or a part goes
 * into a value of the other kind (a key into an array or a scalar, an index
 * into an object). Rendering never changes the template or the context. */
#include <stdio.h>
#include <string.h>

#include "core/def_internal.h"

#define INDEX_DIGITS_MAX 9

static bool key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

int sg_tpath_next(const char **cursor, sg_tseg_t *seg) {
    const char *c = *cursor;
    memset(seg, 0, sizeof *seg);
    if (*c == '\0')
        return 0;
    if (*c == '.') {
        const char *start = ++c;
        while (key_char(*c))
            c++;
        if (c == start)
            return -1;
        seg->key = start;
        seg->key_len = (size_t)(c - start);
    } else if (*c == '[') {
        size_t digits = 0;
        for (c++; *c >= '0' && *c <= '9'; c++, digits++) {
            if (digits == INDEX_DIGITS_MAX)
                return -1;
            seg->index = seg->index * 10 + (size_t)(*c - '0');
        }
        if (digits == 0 || *c != ']')
            return -1;
        c++;
        seg->is_index = true;
    } else {
        return -1;
    }
    *cursor = c;
    return 1;
}

bool sg_tpath_well_formed(const char *s) {
    sg_tseg_t seg;
    int r, n = 0;
    if (s[0] != '$')
        return false;
    const char *c = s + 1;
    while ((r = sg_tpath_next(&c, &seg)) == 1) {
        if (n++ == 0 && seg.is_index)
            return false;
    }
    return r == 0 && n > 0;
}

json_t *sg_template_lookup(const json_t *root, const char *path) {
    sg_tseg_t seg;
    int r;
    if (!root || !path || !sg_tpath_well_formed(path))
        return NULL;
    const json_t *cur = root;
    const char *c = path + 1;
    while (cur && (r = sg_tpath_next(&c, &seg)) == 1) {
        if (seg.is_index)
            cur = json_is_array(cur) ? json_array_get(cur, seg.index) : NULL;
        else
            cur = json_is_object(cur) ? json_object_getn(cur, seg.key, seg.key_len) : NULL;
    }
    return (json_t *)cur;
}

typedef struct render {
    const json_t *context;
    bool missing_as_null;
    sg_jpath_t where;
    char *errstr;
    size_t errstr_size;
} render_t;

static sg_err_t render_value(render_t *r, const json_t *tmpl, json_t **out);

static sg_err_t render_reference(render_t *r, const char *s, json_t **out) {
    char q[SG_QUOTE_MAX];
    if (!sg_tpath_well_formed(s)) {
        snprintf(r->errstr, r->errstr_size, "malformed reference %s (for %s)",
                 sg_quote(s, q, sizeof q), r->where.buf);
        return SG_ERR_TEMPLATE;
    }
    const json_t *val = sg_template_lookup(r->context, s);
    if (!val && !r->missing_as_null) {
        snprintf(r->errstr, r->errstr_size, "no value at %s (for %s)",
                 sg_quote(s, q, sizeof q), r->where.buf);
        return SG_ERR_TEMPLATE;
    }
    *out = val ? json_deep_copy(val) : json_null();
    return *out ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t render_string(render_t *r, const json_t *tmpl, json_t **out) {
    const char *s = json_string_value(tmpl);
    if (s[0] == '$' && s[1] == '$')
        *out = json_stringn(s + 1, json_string_length(tmpl) - 1);
    else if (s[0] == '$' && s[1] == '.')
        return render_reference(r, s, out);
    else
        *out = json_deep_copy(tmpl);
    return *out ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t render_object(render_t *r, const json_t *tmpl, json_t **out) {
    const char *key;
    json_t *val, *obj = json_object();
    if (!obj)
        return SG_ERR_NOMEM;
    json_object_foreach((json_t *)tmpl, key, val) {
        json_t *item = NULL;
        size_t old = sg_jpath_push_key(&r->where, key);
        sg_err_t err = render_value(r, val, &item);
        sg_jpath_pop(&r->where, old);
        if (err == SG_OK && json_object_set_new(obj, key, item) != 0)
            err = SG_ERR_NOMEM;
        if (err != SG_OK) {
            json_decref(obj);
            return err;
        }
    }
    *out = obj;
    return SG_OK;
}

static sg_err_t render_array(render_t *r, const json_t *tmpl, json_t **out) {
    size_t i;
    json_t *val, *arr = json_array();
    if (!arr)
        return SG_ERR_NOMEM;
    json_array_foreach(tmpl, i, val) {
        json_t *item = NULL;
        size_t old = sg_jpath_push_index(&r->where, i);
        sg_err_t err = render_value(r, val, &item);
        sg_jpath_pop(&r->where, old);
        if (err == SG_OK && json_array_append_new(arr, item) != 0)
            err = SG_ERR_NOMEM;
        if (err != SG_OK) {
            json_decref(arr);
            return err;
        }
    }
    *out = arr;
    return SG_OK;
}

static sg_err_t render_value(render_t *r, const json_t *tmpl, json_t **out) {
    *out = NULL;
    if (json_is_object(tmpl))
        return render_object(r, tmpl, out);
    if (json_is_array(tmpl))
        return render_array(r, tmpl, out);
    if (json_is_string(tmpl))
        return render_string(r, tmpl, out);
    *out = json_deep_copy(tmpl);
    return *out ? SG_OK : SG_ERR_NOMEM;
}

sg_err_t sg_template_render(const json_t *tmpl, const json_t *context,
                            bool missing_as_null, json_t **out,
                            char *errstr, size_t errstr_size) {
    render_t r = {.context = context, .missing_as_null = missing_as_null,
                  .errstr = errstr, .errstr_size = errstr_size};
    *out = NULL;
    if (!tmpl) {
        snprintf(errstr, errstr_size, "no template");
        return SG_ERR_INVALID;
    }
    sg_jpath_init(&r.where, "$.data");
    sg_err_t err = render_value(&r, tmpl, out);
    if (err == SG_ERR_NOMEM)
        snprintf(errstr, errstr_size, "out of memory");
    return err;
}
