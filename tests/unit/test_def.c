/* Saga definitions: one row per validation rule (a bad definition and the
 * exact message expected), every problem reported at once in document
 * order, inheritance of timeouts and retry policies, the canonical hash,
 * and the example definitions of sagas/.
 *
 * Definitions are written with single quotes to stay readable; they are
 * turned into double quotes before loading. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/def.h"

#define HEAD "'name':'s','version':1,"
#define CMD "'command':{'type':'t.do','channel':'kafka:t'}"
#define COMP "'compensation':{'type':'t.undo','channel':'kafka:t'}"
#define STEP(n) "{'name':'" n "'," CMD "}"
#define ONE_STEP "'steps':[" STEP("a") "]"
#define GROUP "{'name':'g','parallel':[" STEP("m1") "," STEP("m2") "]}"

static char *dequote(const char *text) {
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

/* Loads 'text' (single-quoted JSON) as order.json. */
static sg_err_t load(const char *text, sg_def_t **def, sg_def_errors_t *errs) {
    char *json = dequote(text);
    sg_err_t err = sg_def_load_string("sagas/order.json", json, strlen(json), def, errs);
    free(json);
    return err;
}

typedef struct row {
    const char *rule;
    const char *json;
    const char *error;
} row_t;

static const row_t rows[] = {
    /* JSON itself */
    {"syntax error has line and column", "{'name':",
     "order.json: line 1, column 8: unexpected token near end of file"},
    {"duplicate key has line and column", "{'name':'a','name':'b'}",
     "order.json: line 1, column 18: duplicate object key near '\"name\"'"},
    {"document is an object", "['a']", "order.json: $: expected an object"},
    /* the saga */
    {"saga name is required", "{'version':1," ONE_STEP "}",
     "order.json: $: missing key \"name\""},
    {"version is required", "{'name':'s'," ONE_STEP "}",
     "order.json: $: missing key \"version\""},
    {"steps are required", "{'name':'s','version':1}", "order.json: $: missing key \"steps\""},
    {"unknown saga key", "{" HEAD ONE_STEP ",'colour':'red'}",
     "order.json: $.colour: unknown key \"colour\""},
    {"unknown key with odd characters", "{" HEAD ONE_STEP ",'a b':1}",
     "order.json: $[\"a b\"]: unknown key \"a b\""},
    {"saga name is a string", "{'name':7,'version':1," ONE_STEP "}",
     "order.json: $.name: expected a string"},
    {"saga name is lowercase", "{'name':'Order','version':1," ONE_STEP "}",
     "order.json: $.name: invalid name \"Order\": must match [a-z][a-z0-9_]{0,62}"},
    {"saga name starts with a letter", "{'name':'1st','version':1," ONE_STEP "}",
     "order.json: $.name: invalid name \"1st\": must match [a-z][a-z0-9_]{0,62}"},
    {"saga name has no dash", "{'name':'my-saga','version':1," ONE_STEP "}",
     "order.json: $.name: invalid name \"my-saga\": must match [a-z][a-z0-9_]{0,62}"},
    {"saga name is at most 63 characters",
     "{'name':'a234567890123456789012345678901234567890123456789012345678901234',"
     "'version':1," ONE_STEP "}",
     "order.json: $.name: invalid name "
     "\"a234567890123456789012345678901234567890123456789012345678901234\": "
     "must match [a-z][a-z0-9_]{0,62}"},
    {"version is an integer", "{'name':'s','version':'2'," ONE_STEP "}",
     "order.json: $.version: expected an integer"},
    {"version is not a real", "{'name':'s','version':1.5," ONE_STEP "}",
     "order.json: $.version: expected an integer"},
    {"version is not zero", "{'name':'s','version':0," ONE_STEP "}",
     "order.json: $.version: must be at least 1"},
    {"version is not negative", "{'name':'s','version':-3," ONE_STEP "}",
     "order.json: $.version: must be at least 1"},
    {"version fits an int", "{'name':'s','version':2147483648," ONE_STEP "}",
     "order.json: $.version: must be at most 2147483647"},
    {"description is a string", "{" HEAD "'description':['x']," ONE_STEP "}",
     "order.json: $.description: expected a string"},
    /* durations */
    {"duration is a string", "{" HEAD "'timeout':30," ONE_STEP "}",
     "order.json: $.timeout: expected a string"},
    {"duration has a unit", "{" HEAD "'timeout':'30'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"30\": expected <number><ms|s|m|h>, as in \"30s\""},
    {"duration unit is known", "{" HEAD "'timeout':'2d'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"2d\": expected <number><ms|s|m|h>, as in \"30s\""},
    {"duration is not zero", "{" HEAD "'timeout':'0s'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"0s\": must be greater than zero"},
    {"duration is not negative", "{" HEAD "'timeout':'-5s'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"-5s\": must be greater than zero"},
    {"duration is whole milliseconds", "{" HEAD "'timeout':'1.5ms'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"1.5ms\": not a whole number of milliseconds"},
    {"duration has no exponent", "{" HEAD "'timeout':'1e3s'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"1e3s\": expected <number><ms|s|m|h>, as in \"30s\""},
    {"duration is bounded", "{" HEAD "'timeout':'1000000000h'," ONE_STEP "}",
     "order.json: $.timeout: invalid duration \"1000000000h\": too large"},
    /* defaults and retry policies */
    {"defaults is an object", "{" HEAD "'defaults':[]," ONE_STEP "}",
     "order.json: $.defaults: expected an object"},
    {"unknown defaults key", "{" HEAD "'defaults':{'timout':'5s'}," ONE_STEP "}",
     "order.json: $.defaults.timout: unknown key \"timout\""},
    {"default timeout is a duration", "{" HEAD "'defaults':{'timeout':'5 s'}," ONE_STEP "}",
     "order.json: $.defaults.timeout: invalid duration \"5 s\": expected <number><ms|s|m|h>, "
     "as in \"30s\""},
    {"max_attempts is not zero", "{" HEAD "'defaults':{'retry':{'max_attempts':0}}," ONE_STEP "}",
     "order.json: $.defaults.retry.max_attempts: must be at least 1"},
    {"max_attempts is not negative",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'retry':{'max_attempts':-2}}]}",
     "order.json: $.steps[0].retry.max_attempts: must be at least 1"},
    {"max_attempts is an integer",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'retry':{'max_attempts':2.5}}]}",
     "order.json: $.steps[0].retry.max_attempts: expected an integer"},
    {"multiplier is a number", "{" HEAD "'defaults':{'retry':{'multiplier':'2'}}," ONE_STEP "}",
     "order.json: $.defaults.retry.multiplier: expected a number"},
    {"multiplier is at least 1", "{" HEAD "'defaults':{'retry':{'multiplier':0.5}}," ONE_STEP "}",
     "order.json: $.defaults.retry.multiplier: must be at least 1"},
    {"backoff is a duration",
     "{" HEAD "'defaults':{'retry':{'initial_backoff':'fast'}}," ONE_STEP "}",
     "order.json: $.defaults.retry.initial_backoff: invalid duration \"fast\": expected "
     "<number><ms|s|m|h>, as in \"30s\""},
    {"unknown retry key", "{" HEAD "'defaults':{'retry':{'attempts':3}}," ONE_STEP "}",
     "order.json: $.defaults.retry.attempts: unknown key \"attempts\""},
    {"max_backoff is not below initial_backoff",
     "{" HEAD "'defaults':{'retry':{'initial_backoff':'2s','max_backoff':'1s'}}," ONE_STEP "}",
     "order.json: $.defaults.retry: max_backoff 1s is less than initial_backoff 2s"},
    {"max_backoff is checked against inherited initial_backoff",
     "{" HEAD "'defaults':{'retry':{'initial_backoff':'2s'}},"
     "'steps':[{'name':'a'," CMD ",'retry':{'max_backoff':'1500ms'}}]}",
     "order.json: $.steps[0].retry: max_backoff 1500ms is less than initial_backoff 2s"},
    {"compensation retry checks its backoff",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u','channel':'kafka:t',"
     "'retry':{'initial_backoff':'1m'}}}]}",
     "order.json: $.steps[0].compensation.retry: max_backoff 10s is less than initial_backoff 1m"},
    /* steps */
    {"steps is an array", "{" HEAD "'steps':{}}", "order.json: $.steps: expected an array"},
    {"steps is not empty", "{" HEAD "'steps':[]}",
     "order.json: $.steps: a saga needs at least one step"},
    {"a step is an object", "{" HEAD "'steps':['a']}",
     "order.json: $.steps[0]: expected an object"},
    {"a step has a name", "{" HEAD "'steps':[{" CMD "}]}",
     "order.json: $.steps[0]: missing key \"name\""},
    {"a step has a command", "{" HEAD "'steps':[{'name':'a'}]}",
     "order.json: $.steps[0]: missing key \"command\""},
    {"unknown step key", "{" HEAD "'steps':[{'name':'a'," CMD ",'colour':1}]}",
     "order.json: $.steps[0].colour: unknown key \"colour\""},
    {"step name rule", "{" HEAD "'steps':[" STEP("Charge") "]}",
     "order.json: $.steps[0].name: invalid name \"Charge\": must match [a-z][a-z0-9_]{0,62}"},
    {"step names are unique", "{" HEAD "'steps':[" STEP("charge") "," STEP("charge") "]}",
     "order.json: $.steps[1].name: duplicate step \"charge\" (first at $.steps[0])"},
    {"step and group names are unique", "{" HEAD "'steps':[" STEP("g") "," GROUP "]}",
     "order.json: $.steps[1].name: duplicate step \"g\" (first at $.steps[0])"},
    {"group members have unique names",
     "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m") "," STEP("m") "]}]}",
     "order.json: $.steps[0].parallel[1].name: duplicate step \"m\" (first at "
     "$.steps[0].parallel[0])"},
    {"step timeout is a duration", "{" HEAD "'steps':[{'name':'a'," CMD ",'timeout':'soon'}]}",
     "order.json: $.steps[0].timeout: invalid duration \"soon\": expected <number><ms|s|m|h>, "
     "as in \"30s\""},
    /* commands and channels */
    {"command is an object", "{" HEAD "'steps':[{'name':'a','command':'go'}]}",
     "order.json: $.steps[0].command: expected an object"},
    {"command has a type", "{" HEAD "'steps':[{'name':'a','command':{'channel':'kafka:t'}}]}",
     "order.json: $.steps[0].command: missing key \"type\""},
    {"command has a channel", "{" HEAD "'steps':[{'name':'a','command':{'type':'t'}}]}",
     "order.json: $.steps[0].command: missing key \"channel\""},
    {"command timeout belongs to the step",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','timeout':'1s'}}]}",
     "order.json: $.steps[0].command.timeout: unknown key \"timeout\""},
    {"type is not empty", "{" HEAD "'steps':[{'name':'a','command':{'type':'','channel':'kafka:t'}}]}",
     "order.json: $.steps[0].command.type: empty type"},
    {"type has no spaces",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'pay now','channel':'kafka:t'}}]}",
     "order.json: $.steps[0].command.type: invalid type \"pay now\": use at most 255 letters, "
     "digits, \".\", \"_\", \"-\", \":\" and \"/\""},
    {"channel is a string", "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':1}}]}",
     "order.json: $.steps[0].command.channel: expected a string"},
    {"unknown transport",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafak:orders'}}]}",
     "order.json: $.steps[0].command.channel: unknown transport \"kafak\""},
    {"channel has a transport",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'orders'}}]}",
     "order.json: $.steps[0].command.channel: invalid channel \"orders\": use kafka:<topic>, "
     "amqp:<exchange>/<routing-key> or amqp:/<queue>"},
    {"kafka topic is not empty",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:'}}]}",
     "order.json: $.steps[0].command.channel: empty kafka topic"},
    {"kafka topic characters",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:a/b'}}]}",
     "order.json: $.steps[0].command.channel: invalid kafka topic \"a/b\": use letters, digits, "
     "\".\", \"_\" and \"-\""},
    {"kafka topic is not dot-dot",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:..'}}]}",
     "order.json: $.steps[0].command.channel: invalid kafka topic \"..\": use letters, digits, "
     "\".\", \"_\" and \"-\""},
    {"amqp channel has a slash",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'amqp:payments'}}]}",
     "order.json: $.steps[0].command.channel: amqp channel without \"/\": use "
     "amqp:<exchange>/<routing-key> or amqp:/<queue>"},
    {"amqp default exchange needs a queue",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'amqp:/'}}]}",
     "order.json: $.steps[0].command.channel: empty queue name: use amqp:/<queue>"},
    {"amqp exchange characters",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'amqp:pay ments/x'}}]}",
     "order.json: $.steps[0].command.channel: invalid amqp exchange \"pay ments\": use at most "
     "255 letters, digits, \"-\", \"_\", \".\" and \":\""},
    {"data is an object",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':[1]}}]}",
     "order.json: $.steps[0].command.data: expected an object"},
    /* compensations */
    {"compensation is an object", "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':true}]}",
     "order.json: $.steps[0].compensation: expected an object"},
    {"compensation has a channel",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u'}}]}",
     "order.json: $.steps[0].compensation: missing key \"channel\""},
    {"unknown compensation key",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u','channel':'kafka:t',"
     "'pivot':true}}]}",
     "order.json: $.steps[0].compensation.pivot: unknown key \"pivot\""},
    {"compensation timeout is a duration",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u','channel':'kafka:t',"
     "'timeout':'0ms'}}]}",
     "order.json: $.steps[0].compensation.timeout: invalid duration \"0ms\": must be greater "
     "than zero"},
    {"compensation max_attempts is not zero",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u','channel':'kafka:t',"
     "'retry':{'max_attempts':0}}}]}",
     "order.json: $.steps[0].compensation.retry.max_attempts: must be at least 1"},
    /* parallel groups */
    {"parallel is an array", "{" HEAD "'steps':[{'name':'g','parallel':{}}]}",
     "order.json: $.steps[0].parallel: expected an array"},
    {"parallel has two steps", "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m") "]}]}",
     "order.json: $.steps[0].parallel: a parallel group needs at least 2 steps"},
    {"a group has a name", "{" HEAD "'steps':[{'parallel':[" STEP("m1") "," STEP("m2") "]}]}",
     "order.json: $.steps[0]: missing key \"name\""},
    {"a group has no command",
     "{" HEAD "'steps':[{'name':'g'," CMD ",'parallel':[" STEP("m1") "," STEP("m2") "]}]}",
     "order.json: $.steps[0].command: unknown key \"command\""},
    {"groups are not nested",
     "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m1") ",{'name':'m2'," CMD
     ",'parallel':[]}]}]}",
     "order.json: $.steps[0].parallel[1].parallel: parallel groups cannot be nested"},
    {"a member has a command",
     "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m1") ",{'name':'m2'}]}]}",
     "order.json: $.steps[0].parallel[1]: missing key \"command\""},
    /* pivot */
    {"pivot is a boolean", "{" HEAD "'steps':[{'name':'a'," CMD ",'pivot':'yes'}]}",
     "order.json: $.steps[0].pivot: expected a boolean"},
    {"pivot is not in a group",
     "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m1") ",{'name':'m2'," CMD
     ",'pivot':true}]}]}",
     "order.json: $.steps[0].parallel[1].pivot: a step in a parallel group cannot be the pivot"},
    {"one pivot at most",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'pivot':true},{'name':'b'," CMD ",'pivot':true}]}",
     "order.json: $.steps[1].pivot: a saga has at most one pivot (first at $.steps[0])"},
    {"no compensation after the pivot",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'pivot':true},{'name':'b'," CMD "," COMP "}]}",
     "order.json: $.steps[1].compensation: a step after the pivot \"a\" cannot have a "
     "compensation: it would never be sent"},
    {"no compensation in a group after the pivot",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'pivot':true},{'name':'g','parallel':["
     STEP("m1") ",{'name':'m2'," CMD "," COMP "}]}]}",
     "order.json: $.steps[1].parallel[1].compensation: a step after the pivot \"a\" cannot have "
     "a compensation: it would never be sent"},
    /* templates */
    {"reference path is not empty",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':'$.'}}}]}",
     "order.json: $.steps[0].command.data.x: malformed reference \"$.\": expected a path like "
     "\"$.input.items[0].id\" (write \"$$\" for a literal \"$\")"},
    {"reference has no empty part",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.input..id'}}}]}",
     "order.json: $.steps[0].command.data.x: malformed reference \"$.input..id\": expected a "
     "path like \"$.input.items[0].id\" (write \"$$\" for a literal \"$\")"},
    {"reference index is a number",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.input.items[first]'}}}]}",
     "order.json: $.steps[0].command.data.x: malformed reference \"$.input.items[first]\": "
     "expected a path like \"$.input.items[0].id\" (write \"$$\" for a literal \"$\")"},
    {"reference starts with a key",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$[0]'}}}]}",
     "order.json: $.steps[0].command.data.x: malformed reference \"$[0]\": expected a path like "
     "\"$.input.items[0].id\" (write \"$$\" for a literal \"$\")"},
    {"a single dollar needs escaping",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$5 off'}}}]}",
     "order.json: $.steps[0].command.data.x: malformed reference \"$5 off\": expected a path "
     "like \"$.input.items[0].id\" (write \"$$\" for a literal \"$\")"},
    {"reference root is known",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.inptu.id'}}}]}",
     "order.json: $.steps[0].command.data.x: unknown root in \"$.inptu.id\": use $.saga.id, "
     "$.saga.type, $.input or $.steps.<step>"},
    {"saga fields are id and type",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.saga.name'}}}]}",
     "order.json: $.steps[0].command.data.x: unknown saga field in \"$.saga.name\": use "
     "$.saga.id or $.saga.type"},
    {"saga field has no parts",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.saga.id.x'}}}]}",
     "order.json: $.steps[0].command.data.x: unknown saga field in \"$.saga.id.x\": use "
     "$.saga.id or $.saga.type"},
    {"steps reference names a step",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.steps[0]'}}}]}",
     "order.json: $.steps[0].command.data.x: \"$.steps[0]\" needs a step name: $.steps.<step>"},
    {"reference to an unknown step",
     "{" HEAD "'steps':[" STEP("a") ",{'name':'b','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.steps.c.id'}}}]}",
     "order.json: $.steps[1].command.data.x: reference to unknown step \"c\""},
    {"reference to a later step",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.steps.b.id'}}}," STEP("b") "]}",
     "order.json: $.steps[0].command.data.x: step \"b\" does not run before \"a\""},
    {"reference to a parallel sibling",
     "{" HEAD "'steps':[{'name':'g','parallel':[" STEP("m1") ",{'name':'m2','command':{'type':'t',"
     "'channel':'kafka:t','data':{'x':'$.steps.m1.id'}}}]}]}",
     "order.json: $.steps[0].parallel[1].command.data.x: step \"m1\" runs in parallel with "
     "\"m2\", not before it"},
    {"command does not refer to its own step",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.steps.a.id'}}}]}",
     "order.json: $.steps[0].command.data.x: a command cannot refer to its own step's result "
     "(\"$.steps.a.id\")"},
    {"reference to a group",
     "{" HEAD "'steps':[" GROUP ",{'name':'b','command':{'type':'t','channel':'kafka:t',"
     "'data':{'x':'$.steps.g.id'}}}]}",
     "order.json: $.steps[1].command.data.x: \"g\" is a parallel group, not a step: refer to one "
     "of its steps"},
    {"compensation refers only to earlier steps",
     "{" HEAD "'steps':[{'name':'a'," CMD ",'compensation':{'type':'u','channel':'kafka:t',"
     "'data':{'x':'$.steps.b.id'}}}," STEP("b") "]}",
     "order.json: $.steps[0].compensation.data.x: step \"b\" does not run before \"a\""},
    {"references are found in nested arrays",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'items':[{'sku':'$.input.sku'},[1,'$.nope']]}}}]}",
     "order.json: $.steps[0].command.data.items[1][1]: unknown root in \"$.nope\": use "
     "$.saga.id, $.saga.type, $.input or $.steps.<step>"},
    {"data keys with odd characters are quoted in the path",
     "{" HEAD "'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t',"
     "'data':{'order id':'$.x'}}}]}",
     "order.json: $.steps[0].command.data[\"order id\"]: unknown root in \"$.x\": use "
     "$.saga.id, $.saga.type, $.input or $.steps.<step>"},
};

static void test_each_rule_reports_its_exact_message(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        sg_def_t *def = NULL;
        sg_def_errors_t errs = {0};
        sg_err_t err = load(rows[i].json, &def, &errs);
        if (err != SG_ERR_INVALID || def || errs.count != 1 ||
            strcmp(errs.items[0], rows[i].error)) {
            failures++;
            print_error("rule \"%s\": want\n  %s\ngot %zu:\n", rows[i].rule, rows[i].error,
                        errs.count);
            for (size_t k = 0; k < errs.count; k++)
                print_error("  %s\n", errs.items[k]);
        }
        sg_def_destroy(def);
        sg_def_errors_release(&errs);
    }
    assert_int_equal(failures, 0);
}

static void test_every_problem_is_reported_at_once_in_document_order(void **state) {
    (void)state;
    static const char *const want[] = {
        "order.json: $.steps[0].command.channel: unknown transport \"kafak\"",
        "order.json: $.steps[0].colour: unknown key \"colour\"",
        "order.json: $.steps[1]: missing key \"command\"",
        "order.json: $.steps[1].name: duplicate step \"a\" (first at $.steps[0])",
        "order.json: $.steps[2].timeout: invalid duration \"0s\": must be greater than zero",
        "order.json: $.name: invalid name \"Bad\": must match [a-z][a-z0-9_]{0,62}",
        "order.json: $.version: must be at least 1",
    };
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(load("{'steps':[{'name':'a','command':{'type':'t','channel':'kafak:x'},"
                          "'colour':1},{'name':'a'},{'name':'c'," CMD ",'timeout':'0s'}],"
                          "'name':'Bad','version':0}",
                          &def, &errs),
                     SG_ERR_INVALID);
    assert_null(def);
    for (size_t k = 0; k < errs.count; k++)
        print_message("%s\n", errs.items[k]);
    assert_int_equal(errs.count, sizeof want / sizeof want[0]);
    for (size_t k = 0; k < errs.count; k++)
        assert_string_equal(errs.items[k], want[k]);
    sg_def_errors_release(&errs);
}

static void test_compensation_may_refer_to_its_own_and_earlier_steps(void **state) {
    (void)state;
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(
        load("{" HEAD "'steps':[" STEP("a") ",{'name':'g','parallel':[{'name':'m1','command':{"
             "'type':'t','channel':'kafka:t','data':{'a':'$.steps.a.id'}},'compensation':{"
             "'type':'u','channel':'kafka:t','data':{'own':'$.steps.m1.id','a':'$.steps.a[0]',"
             "'lit':'$$.steps.zz','input':'$.input','id':'$.saga.id','type':'$.saga.type'}}},"
             STEP("m2") "]}]}",
             &def, &errs),
        SG_OK);
    assert_int_equal(errs.count, 0);
    sg_def_destroy(def);
}

static sg_def_t *load_ok(const char *text) {
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    sg_err_t err = load(text, &def, &errs);
    for (size_t k = 0; k < errs.count; k++)
        print_error("%s\n", errs.items[k]);
    assert_int_equal(err, SG_OK);
    sg_def_errors_release(&errs);
    return def;
}

static const char *source_dir(void) {
    const char *dir = getenv("SAGA_SOURCE_DIR");
    return dir && *dir ? dir : SAGA_SOURCE_DIR;
}

static sg_def_t *load_example(const char *name) {
    char path[4096];
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    snprintf(path, sizeof path, "%s/sagas/%s", source_dir(), name);
    sg_err_t err = sg_def_load_file(path, &def, &errs);
    for (size_t k = 0; k < errs.count; k++)
        print_error("%s\n", errs.items[k]);
    assert_int_equal(err, SG_OK);
    sg_def_errors_release(&errs);
    return def;
}

static void test_contract_example_loads_into_stages_and_steps(void **state) {
    (void)state;
    sg_def_t *def = load_example("order_fulfillment.json");
    assert_string_equal(def->name, "order_fulfillment");
    assert_int_equal(def->version, 2);
    assert_string_equal(def->description, "Reserve stock, charge the card, ship.");
    assert_int_equal(def->timeout_ms, 15 * 60 * 1000);
    assert_int_equal(def->nstages, 4);
    assert_int_equal(def->nsteps, 5);
    assert_string_equal(def->stages[1].name, "checks");
    assert_true(def->stages[1].parallel);
    assert_int_equal(def->stages[1].first, 1);
    assert_int_equal(def->stages[1].count, 2);
    assert_false(def->stages[2].parallel);
    assert_int_equal(def->stages[3].first, 4);

    const sg_step_t *credit = sg_def_step(def, "credit_check");
    assert_non_null(credit);
    assert_int_equal(credit->index, 2);
    assert_int_equal(credit->stage, 1);
    assert_int_equal(credit->command.channel.transport, SG_TRANSPORT_AMQP);
    assert_string_equal(credit->command.channel.exchange, "");
    assert_string_equal(credit->command.channel.routing_key, "credit.commands");
    assert_false(credit->has_compensation);
    assert_null(sg_def_step(def, "checks"));

    const sg_step_t *reserve = &def->steps[0];
    assert_string_equal(reserve->name, "reserve_inventory");
    assert_int_equal(reserve->command.timeout_ms, 5000);
    assert_int_equal(reserve->compensation.timeout_ms, 5000);
    assert_string_equal(reserve->command.type, "inventory.reserve");
    assert_int_equal(reserve->command.channel.transport, SG_TRANSPORT_KAFKA);
    assert_string_equal(reserve->command.channel.topic, "inventory.commands");
    assert_string_equal(reserve->command.channel.text, "kafka:inventory.commands");
    assert_string_equal(json_string_value(json_object_get(reserve->command.data, "items")),
                        "$.input.items");
    assert_true(reserve->has_compensation);
    assert_string_equal(reserve->compensation.type, "inventory.release");

    const sg_step_t *charge = sg_def_step(def, "charge_payment");
    assert_int_equal(charge->command.retry.max_attempts, 5);
    assert_int_equal(charge->command.retry.initial_backoff_ms, 200);
    assert_int_equal(charge->command.timeout_ms, 30000);
    assert_int_equal(charge->compensation.retry.max_attempts, 10);
    assert_string_equal(charge->compensation.channel.exchange, "payments");
    assert_string_equal(charge->compensation.channel.routing_key, "refund");

    const sg_step_t *ship = sg_def_step(def, "ship_order");
    assert_true(ship->pivot);
    assert_int_equal(def->pivot_step, ship->index);
    assert_false(charge->pivot);
    assert_int_equal(ship->command.retry.max_attempts, 3);
    sg_def_destroy(def);
}

static void test_retry_and_timeout_are_inherited_field_by_field(void **state) {
    (void)state;
    sg_def_t *def = load_ok(
        "{" HEAD "'defaults':{'timeout':'4s','retry':{'max_attempts':6,'initial_backoff':'1s',"
        "'multiplier':3}},'steps':[{'name':'a'," CMD ",'timeout':'9s','retry':{'max_backoff':"
        "'1m'},'compensation':{'type':'u','channel':'kafka:t','retry':{'multiplier':1.5}}},"
        "{'name':'b'," CMD ",'compensation':{'type':'u','channel':'kafka:t','timeout':'2m'}}]}");
    const sg_step_t *a = &def->steps[0], *b = &def->steps[1];
    assert_int_equal(def->timeout_ms, 0);
    assert_int_equal(a->command.timeout_ms, 9000);
    assert_int_equal(a->command.retry.max_attempts, 6);
    assert_int_equal(a->command.retry.initial_backoff_ms, 1000);
    assert_int_equal(a->command.retry.max_backoff_ms, 60000);
    assert_true(a->command.retry.multiplier == 3.0);
    /* a compensation keeps 10 attempts and takes the backoff of defaults */
    assert_int_equal(a->compensation.timeout_ms, 9000);
    assert_int_equal(a->compensation.retry.max_attempts, 10);
    assert_int_equal(a->compensation.retry.initial_backoff_ms, 1000);
    assert_int_equal(a->compensation.retry.max_backoff_ms, 10000);
    assert_true(a->compensation.retry.multiplier == 1.5);
    assert_int_equal(b->command.timeout_ms, 4000);
    assert_int_equal(b->compensation.timeout_ms, 120000);
    assert_true(b->compensation.retry.multiplier == 3.0);
    sg_def_destroy(def);
}

static void test_built_in_defaults_apply_without_defaults(void **state) {
    (void)state;
    sg_def_t *def = load_ok("{" HEAD "'steps':[{'name':'a'," CMD "," COMP "}]}");
    const sg_step_t *a = &def->steps[0];
    assert_string_equal(def->description, "");
    assert_int_equal(def->pivot_step, -1);
    assert_int_equal(a->command.timeout_ms, 30000);
    assert_int_equal(a->command.retry.max_attempts, 3);
    assert_int_equal(a->command.retry.initial_backoff_ms, 200);
    assert_int_equal(a->command.retry.max_backoff_ms, 10000);
    assert_true(a->command.retry.multiplier == 2.0);
    assert_int_equal(a->compensation.retry.max_attempts, 10);
    assert_int_equal(a->compensation.timeout_ms, 30000);
    /* no "data": an empty object to render */
    assert_true(json_is_object(a->command.data));
    assert_int_equal(json_object_size(a->command.data), 0);
    sg_def_destroy(def);
}

static void test_hash_ignores_whitespace_and_key_order(void **state) {
    (void)state;
    sg_def_t *a = load_ok("{'name':'s','version':1,'steps':[{'name':'a','command':"
                          "{'type':'t','channel':'kafka:t','data':{'x':1,'y':[true,null]}}}]}");
    sg_def_t *b = load_ok("{\n  'steps' : [ { 'command' : { 'data' : { 'y' : [ true , null ] ,"
                          " 'x' : 1 },\n 'channel':'kafka:t', 'type':'t' }, 'name':'a' } ],\n"
                          "\t'version': 1, 'name': 's'\n}\n");
    assert_string_equal(a->canonical,
                        "{\"name\":\"s\",\"steps\":[{\"command\":{\"channel\":\"kafka:t\","
                        "\"data\":{\"x\":1,\"y\":[true,null]},\"type\":\"t\"},\"name\":\"a\"}],"
                        "\"version\":1}");
    assert_string_equal(a->canonical, b->canonical);
    assert_string_equal(a->sha256, b->sha256);
    /* the SHA-256 of the canonical text, as sha256sum computes it */
    assert_string_equal(a->sha256,
                        "3ba30f626e9f6a439b8cd54028acd3b49d491e893e00122f1cffa429597744a0");
    sg_def_destroy(a);
    sg_def_destroy(b);
}

static void test_hash_changes_with_any_value(void **state) {
    (void)state;
    static const char *const variants[] = {
        "{'name':'s','version':1,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':1}}}]}",
        "{'name':'s','version':2,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':1}}}]}",
        "{'name':'s','version':1,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':2}}}]}",
        "{'name':'s','version':1,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':'1'}}}]}",
        "{'name':'s','version':1,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:u','data':{'x':1}}}]}",
        "{'name':'s','version':1,'steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'z':1}}}]}",
        "{'name':'s','version':1,'description':'','steps':[{'name':'a','command':{'type':'t','channel':'kafka:t','data':{'x':1}}}]}",
    };
    size_t n = sizeof variants / sizeof variants[0];
    sg_def_t *defs[sizeof variants / sizeof variants[0]];
    for (size_t i = 0; i < n; i++)
        defs[i] = load_ok(variants[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(defs[i]->sha256, defs[j]->sha256);
    for (size_t i = 0; i < n; i++)
        sg_def_destroy(defs[i]);
}

static void test_canonical_text_reloads_to_the_same_hash(void **state) {
    (void)state;
    sg_def_t *def = load_example("travel_booking.json"), *again = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_load_string(NULL, def->canonical, strlen(def->canonical), &again,
                                        &errs),
                     SG_OK);
    assert_string_equal(again->sha256, def->sha256);
    assert_string_equal(again->file, "");
    sg_def_destroy(def);
    sg_def_destroy(again);
}

static void test_every_example_in_sagas_validates(void **state) {
    (void)state;
    char dirpath[4096];
    int count = 0;
    snprintf(dirpath, sizeof dirpath, "%s/sagas", source_dir());
    DIR *d = opendir(dirpath);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        sg_def_t *def = load_example(e->d_name);
        assert_true(def->nsteps >= 2);
        sg_def_destroy(def);
        count++;
    }
    closedir(d);
    assert_true(count >= 3);
}

static void test_examples_use_both_transports(void **state) {
    (void)state;
    static const char *const names[] = {"order_fulfillment.json", "travel_booking.json",
                                        "greeting.json"};
    for (size_t i = 0; i < 3; i++) {
        sg_def_t *def = load_example(names[i]);
        bool kafka = false, amqp = false;
        for (int s = 0; s < def->nsteps; s++) {
            kafka |= def->steps[s].command.channel.transport == SG_TRANSPORT_KAFKA;
            amqp |= def->steps[s].command.channel.transport == SG_TRANSPORT_AMQP;
        }
        assert_true(kafka && amqp);
        sg_def_destroy(def);
    }
}

static void test_unreadable_file_is_an_io_error_naming_the_file(void **state) {
    (void)state;
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_load_file("/nonexistent/dir/order.json", &def, &errs), SG_ERR_IO);
    assert_null(def);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0], "order.json: cannot read file: No such file or directory");
    sg_def_errors_release(&errs);
}

static void test_string_without_file_name_is_shown_as_string(void **state) {
    (void)state;
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_load_string(NULL, "[]", 2, &def, &errs), SG_ERR_INVALID);
    assert_string_equal(errs.items[0], "<string>: $: expected an object");
    sg_def_errors_release(&errs);
}

static void test_byte_order_mark_is_skipped(void **state) {
    (void)state;
    sg_def_t *plain = load_ok("{" HEAD ONE_STEP "}");
    sg_def_t *marked = load_ok("\xef\xbb\xbf{" HEAD ONE_STEP "}");
    assert_string_equal(plain->sha256, marked->sha256);
    sg_def_destroy(plain);
    sg_def_destroy(marked);
}

static void test_long_user_text_is_cut_in_messages(void **state) {
    (void)state;
    char name[400], json[600];
    memset(name, 'X', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(json, sizeof json, "{'name':'%s','version':1," ONE_STEP "}", name);
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    assert_int_equal(load(json, &def, &errs), SG_ERR_INVALID);
    assert_int_equal(errs.count, 1);
    assert_true(strlen(errs.items[0]) < 200);
    assert_non_null(strstr(errs.items[0], "XXX...\": must match"));
    sg_def_errors_release(&errs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rule_reports_its_exact_message),
        cmocka_unit_test(test_every_problem_is_reported_at_once_in_document_order),
        cmocka_unit_test(test_compensation_may_refer_to_its_own_and_earlier_steps),
        cmocka_unit_test(test_contract_example_loads_into_stages_and_steps),
        cmocka_unit_test(test_retry_and_timeout_are_inherited_field_by_field),
        cmocka_unit_test(test_built_in_defaults_apply_without_defaults),
        cmocka_unit_test(test_hash_ignores_whitespace_and_key_order),
        cmocka_unit_test(test_hash_changes_with_any_value),
        cmocka_unit_test(test_canonical_text_reloads_to_the_same_hash),
        cmocka_unit_test(test_every_example_in_sagas_validates),
        cmocka_unit_test(test_examples_use_both_transports),
        cmocka_unit_test(test_unreadable_file_is_an_io_error_naming_the_file),
        cmocka_unit_test(test_string_without_file_name_is_shown_as_string),
        cmocka_unit_test(test_byte_order_mark_is_skipped),
        cmocka_unit_test(test_long_user_text_is_cut_in_messages),
    };
    return cmocka_run_group_tests_name("def", tests, NULL, NULL);
}
