/*
 * json.h: writing JSON documents to a stdio stream, for the commands that
 * offer --json (tokens, status). Members are written one after the other;
 * the caller writes the braces and brackets and keeps an `int first = 1`
 * per object or array so that commas land right.
 */
#ifndef P11E_JSON_H
#define P11E_JSON_H

#include <stdio.h>
#include <time.h>

/*
 * Writes s as a JSON string (quotes included); NULL as null. Control
 * characters are escaped; bytes that are not valid UTF-8 become U+FFFD, so
 * that any input (a token label in Latin-1) gives a valid document.
 */
void json_str(FILE *f, const char *s);

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes left), or 0. */
size_t json_utf8_len(const unsigned char *s, size_t n);

/* Writes `"key":` (preceded by a comma unless *first); clears *first. */
void json_key(FILE *f, int *first, const char *key);

/* A member whose value is a string (json_str: NULL is null). */
void json_kstr(FILE *f, int *first, const char *key, const char *val);

/* A member whose value is true or false. */
void json_kbool(FILE *f, int *first, const char *key, int val);

/* A member whose value is a number. */
void json_kulong(FILE *f, int *first, const char *key, unsigned long val);
void json_klong(FILE *f, int *first, const char *key, long val);

/*
 * A member whose value is the time t as an RFC 3339 UTC string
 * ("2026-11-25T22:15:28Z"); null when t is 0.
 */
void json_ktime(FILE *f, int *first, const char *key, time_t t);

/* t as RFC 3339 UTC into buf (at least 21 bytes): "2026-11-25T22:15:28Z". */
void json_time(time_t t, char *buf, size_t len);

#endif
