/* The bounded map of saga/cache.h: a ring of entries in the order they were
 * put, indexed by key with a jansson object (a hash table that maps each key
 * to its place in the ring). Putting writes at the ring's next place,
 * evicting what is there; taking leaves a hole that the ring refills when
 * it comes round. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga/cache.h"

typedef struct entry {
    char *key;          /* NULL: a free place */
    void *value;
    int64_t version;
    const void *aux;
} entry_t;

struct sg_cache {
    entry_t *ring;
    size_t capacity;
    size_t next;        /* where the next entry goes */
    size_t size;
    json_t *index;      /* key -> place in the ring */
    void (*free_value)(void *);
};

sg_cache_t *sg_cache_new(size_t capacity, void (*free_value)(void *)) {
    sg_cache_t *c = calloc(1, sizeof *c);
    if (!c || capacity == 0)
        goto fail;
    c->ring = calloc(capacity, sizeof *c->ring);
    c->index = json_object();
    if (!c->ring || !c->index)
        goto fail;
    c->capacity = capacity;
    c->free_value = free_value;
    return c;
fail:
    if (c) {
        free(c->ring);
        json_decref(c->index);
    }
    free(c);
    return NULL;
}

/* Empties place 'i', handing its value out (or freeing it when 'out' is
 * NULL). */
static void vacate(sg_cache_t *c, size_t i, void **out) {
    entry_t *e = &c->ring[i];
    json_object_del(c->index, e->key);
    if (out)
        *out = e->value;
    else if (c->free_value)
        c->free_value(e->value);
    free(e->key);
    *e = (entry_t){0};
    c->size--;
}

static bool place_of(const sg_cache_t *c, const char *key, size_t *i) {
    json_t *at = json_object_get(c->index, key);
    if (!at)
        return false;
    *i = (size_t)json_integer_value(at);
    return true;
}

void sg_cache_destroy(sg_cache_t *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->capacity; i++)
        if (c->ring[i].key)
            vacate(c, i, NULL);
    free(c->ring);
    json_decref(c->index);
    free(c);
}

bool sg_cache_put(sg_cache_t *c, const char *key, void *value, int64_t version,
                  const void *aux) {
    size_t i;
    if (place_of(c, key, &i))
        vacate(c, i, NULL);
    i = c->next;
    if (c->ring[i].key)
        vacate(c, i, NULL);
    char *copy = strdup(key);
    if (!copy || json_object_set_new(c->index, key, json_integer((json_int_t)i)) != 0) {
        free(copy);
        if (c->free_value)
            c->free_value(value);
        return false;
    }
    c->ring[i] = (entry_t){.key = copy, .value = value, .version = version, .aux = aux};
    c->next = (i + 1) % c->capacity;
    c->size++;
    return true;
}

bool sg_cache_take(sg_cache_t *c, const char *key, void **value, int64_t *version,
                   const void **aux) {
    size_t i;
    if (!place_of(c, key, &i))
        return false;
    *version = c->ring[i].version;
    *aux = c->ring[i].aux;
    vacate(c, i, value);
    return true;
}

void sg_cache_forget(sg_cache_t *c, const char *key) {
    size_t i;
    if (place_of(c, key, &i))
        vacate(c, i, NULL);
}

size_t sg_cache_size(const sg_cache_t *c) { return c->size; }
