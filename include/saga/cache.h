/* A bounded map from saga id to something the caller owns while it is out
 * of the map: sagad keeps the states it has just committed here, with
 * their versions, so that the next input of a saga needs no read of the
 * database. The version check of every update makes a stale entry
 * harmless (a conflict, then a fresh read).
 *
 * Entries are taken out to be used and put back after: taking moves the
 * value to the caller. When the map is full, putting evicts the entry that
 * was put longest ago (and frees it). One thread at a time. */
#ifndef SAGA_CACHE_H
#define SAGA_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sg_cache sg_cache_t;

/* 'free_value' frees what eviction or destruction drops (may be NULL). */
sg_cache_t *sg_cache_new(size_t capacity, void (*free_value)(void *));
void sg_cache_destroy(sg_cache_t *c);

/* Moves 'value' in under 'key' (copied), replacing (and freeing) an entry
 * of the same key. False without memory: then 'value' is freed. */
bool sg_cache_put(sg_cache_t *c, const char *key, void *value, int64_t version,
                  const void *aux);
/* Moves the entry of 'key' out: true and its parts, or false when absent. */
bool sg_cache_take(sg_cache_t *c, const char *key, void **value, int64_t *version,
                   const void **aux);
/* Drops the entry of 'key', if any. */
void sg_cache_forget(sg_cache_t *c, const char *key);
size_t sg_cache_size(const sg_cache_t *c);

#endif
