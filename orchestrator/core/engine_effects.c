/* The list of effects one engine apply returns, in the order the caller
 * must carry them out, and the engine's allocation helpers (the engine
 * aborts on out of memory: nothing has been committed at that point). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_internal.h"

void *sg_engine_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

char *sg_engine_xstrdup(const char *s) {
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

char *sg_engine_xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *p = sg_engine_xcalloc((size_t)n + 1, 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

json_t *sg_engine_xjson(json_t *j) {
    if (!j)
        abort();
    return j;
}

sg_effects_t *sg_effects_new(void) {
    return sg_engine_xcalloc(1, sizeof(sg_effects_t));
}

sg_effect_t *sg_effects_push(sg_effects_t *fx, sg_effect_kind_t kind) {
    if (fx->count == fx->cap) {
        size_t cap = fx->cap ? fx->cap * 2 : 16;
        sg_effect_t *items = realloc(fx->items, cap * sizeof *items);
        if (!items)
            abort();
        fx->items = items;
        fx->cap = cap;
    }
    sg_effect_t *e = &fx->items[fx->count++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    return e;
}

size_t sg_effects_count(const sg_effects_t *fx) {
    return fx ? fx->count : 0;
}

const char *sg_effects_ignored(const sg_effects_t *fx) {
    const sg_effect_t *first = sg_effects_at(fx, 0);
    if (!first || first->kind != SG_EFFECT_HISTORY)
        return NULL;
    return json_string_value(json_object_get(first->history.detail, "ignored"));
}

const sg_effect_t *sg_effects_at(const sg_effects_t *fx, size_t i) {
    return fx && i < fx->count ? &fx->items[i] : NULL;
}

static void effect_release(sg_effect_t *e) {
    switch (e->kind) {
    case SG_EFFECT_COMMAND:
        free(e->command.id);
        free(e->command.saga_id);
        free(e->command.saga_type);
        free(e->command.step);
        free(e->command.replyto);
        free(e->command.traceparent);
        json_decref(e->command.data);
        break;
    case SG_EFFECT_EVENT:
        free(e->event.id);
        free(e->event.saga_id);
        free(e->event.saga_type);
        free(e->event.step);
        free(e->event.traceparent);
        json_decref(e->event.data);
        break;
    case SG_EFFECT_TIMER_ARM:
    case SG_EFFECT_TIMER_CANCEL:
        free(e->timer.step);
        break;
    case SG_EFFECT_HISTORY:
        free(e->history.step);
        json_decref(e->history.detail);
        break;
    }
}

void sg_effects_destroy(sg_effects_t *fx) {
    if (!fx)
        return;
    for (size_t i = 0; i < fx->count; i++)
        effect_release(&fx->items[i]);
    free(fx->items);
    free(fx);
}

static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}

static json_t *command_json(const sg_command_t *c) {
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:s,s:s,s:O}",
                     "effect", "command", "id", c->id, "type", c->type,
                     "channel", c->channel->text, "saga_type", c->saga_type,
                     "step", c->step, "undo", c->undo, "attempt", c->attempt,
                     "replyto", c->replyto, "traceparent", c->traceparent,
                     "data", c->data);
}

static json_t *event_json(const sg_event_t *e) {
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:O}", "effect", "event", "id", e->id,
                     "type", e->type, "step", str_or_null(e->step),
                     "traceparent", e->traceparent, "data", e->data);
}

static json_t *timer_json(const char *effect, const sg_timer_t *t) {
    return json_pack("{s:s,s:s,s:o,s:i,s:I}", "effect", effect, "kind",
                     sg_timer_kind_str(t->kind), "step", str_or_null(t->step),
                     "attempt", t->attempt, "due_at_ms", (json_int_t)t->due_at_ms);
}

static json_t *history_json(const sg_history_t *h) {
    return json_pack("{s:s,s:s,s:o,s:O}", "effect", "history", "event", h->event,
                     "step", str_or_null(h->step), "detail", h->detail);
}

json_t *sg_effects_to_json(const sg_effects_t *fx) {
    json_t *arr = sg_engine_xjson(json_array());
    for (size_t i = 0; fx && i < fx->count; i++) {
        const sg_effect_t *e = &fx->items[i];
        json_t *j = NULL;
        switch (e->kind) {
        case SG_EFFECT_COMMAND: j = command_json(&e->command); break;
        case SG_EFFECT_EVENT: j = event_json(&e->event); break;
        case SG_EFFECT_TIMER_ARM: j = timer_json("timer.arm", &e->timer); break;
        case SG_EFFECT_TIMER_CANCEL: j = timer_json("timer.cancel", &e->timer); break;
        case SG_EFFECT_HISTORY: j = history_json(&e->history); break;
        }
        json_array_append_new(arr, sg_engine_xjson(j));
    }
    return arr;
}
