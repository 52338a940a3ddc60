/* babelfish — XEP-0004 data forms: the fields a transport declares (its
 * registration form, the steps of its ad-hoc commands) and the forms users
 * submit back.
 *
 * A transport describes fields with const bf_field arrays; the core turns
 * them into <x xmlns='jabber:x:data'/> elements, parses what comes back
 * into a bf_form (values by var) and checks it against the same fields.
 */
#ifndef BABELFISH_FORM_H
#define BABELFISH_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "xml.h"

#define BF_NS_DATA "jabber:x:data"

/* Longest value accepted for a field without its own max_length. */
#define BF_FORM_VALUE_MAX 4096
/* Most values a multi-valued field (list-multi, text-multi, jid-multi)
 * may carry. */
#define BF_FORM_VALUES_MAX 256

/* XEP-0004 §3.3 field types. */
enum bf_field_type {
  BF_FIELD_TEXT_SINGLE,
  BF_FIELD_TEXT_PRIVATE,       /* passwords: never sent back to the user */
  BF_FIELD_TEXT_MULTI,
  BF_FIELD_BOOLEAN,
  BF_FIELD_LIST_SINGLE,
  BF_FIELD_LIST_MULTI,
  BF_FIELD_JID_SINGLE,
  BF_FIELD_JID_MULTI,
  BF_FIELD_HIDDEN,
  BF_FIELD_FIXED,              /* a label shown in the form; no value: its
                                  label is sent as its <value/> text */
};

typedef struct bf_field_option {
  const char *value;
  const char *label;           /* NULL = the value */
} bf_field_option;

typedef struct bf_field {
  const char *var;             /* NULL only for BF_FIELD_FIXED */
  enum bf_field_type type;
  const char *label;
  const char *desc;            /* <desc/>, a hint; may be NULL */
  bool required;
  const char *default_value;   /* shown when the user has no value; booleans
                                  "1"/"0"; may be NULL */
  const bf_field_option *options; /* list types: terminated by {NULL, NULL} */
  size_t max_length;           /* bytes per value; 0 = BF_FORM_VALUE_MAX */
  /* Extra check of one value (already known to be of the right type);
   * NULL = none. Returns 0, or BF_EINVAL with a message for the user in
   * err. */
  int (*validate)(const char *value, char *err, size_t err_size);
} bf_field;

/* A parsed or built-up form: its type and the values of its fields. */
typedef struct bf_form bf_form;

/* An empty form of the given type ("form", "submit", "cancel", "result").
 * Returns NULL on ENOMEM. */
bf_form *bf_form_new(const char *type);
void bf_form_free(bf_form *form);

/* Parses <x xmlns='jabber:x:data'/> (x: borrowed). Values are copied.
 * Fixed fields are skipped; a cancel form's fields are ignored.
 * Returns 0, BF_EINVAL (not a data form, no or unknown type, a field
 * without var other than fixed, a var twice, more than 256 fields, more
 * than BF_FORM_VALUES_MAX values, a value over BF_FORM_VALUE_MAX * 4
 * bytes) or BF_ENOMEM. On error *form is NULL. */
int bf_form_parse(const bf_xml *x, bf_form **form);

const char *bf_form_type(const bf_form *form);

/* The first value of var, or NULL if the form has no such field or it has
 * no value. */
const char *bf_form_value(const bf_form *form, const char *var);

/* All values of var: *values (borrowed, valid until the form changes)
 * gets the array; returns how many (0 if none). */
size_t bf_form_values(const bf_form *form, const char *var,
                      const char *const **values);

/* Sets var to one value (replacing any); value NULL removes the field.
 * Copied. 0 or BF_ENOMEM. */
int bf_form_set(bf_form *form, const char *var, const char *value);
/* Appends a value to var (multi-valued fields). 0, BF_E2BIG, BF_ENOMEM. */
int bf_form_add_value(bf_form *form, const char *var, const char *value);

/* Checks a submitted form against fields: every required field has a
 * non-empty value; booleans are true/false/1/0 (normalised to "1"/"0");
 * list values are among the options; single-valued fields have one value;
 * JIDs are valid (and normalised); lengths are within max_length; then
 * each field's validate(). Fields the form has that are not in fields
 * (except FORM_TYPE) are removed. On error returns BF_EINVAL, sets
 * *bad_var (borrowed from fields) and writes a message for the user to
 * err. */
int bf_form_validate(bf_form *form, const bf_field *fields, size_t n_fields,
                     const char **bad_var, char *err, size_t err_size);

/* Appends <x xmlns='jabber:x:data' type='TYPE'> to parent, with <title>
 * and <instructions> when not NULL, a hidden FORM_TYPE field when
 * form_type is not NULL (XEP-0068), and one <field/> per entry of fields
 * (type, label, <desc/>, <required/>, <option/>s). Values come from
 * current (NULL = none) or else default_value; BF_FIELD_TEXT_PRIVATE
 * fields never carry a value (a stored password is not sent back).
 * Returns the <x/> element (owned by parent's tree) or NULL on ENOMEM. */
bf_xml *bf_form_add(bf_xml *parent, const char *type, const char *form_type,
                    const char *title, const char *instructions,
                    const bf_field *fields, size_t n_fields,
                    const bf_form *current);

/* Appends a result form (type "result") with the given values only:
 * one <field var=…><value>…</value></field> per field of form, for
 * showing data back (e.g. an ad-hoc command's output). fields (may be
 * NULL): the declarations of the form's vars; declared fields get their
 * type and label, and BF_FIELD_TEXT_PRIVATE ones are left out, so a
 * stored password is never shown back. NULL on ENOMEM. */
bf_xml *bf_form_add_result(bf_xml *parent, const char *title,
                           const bf_form *form, const bf_field *fields,
                           size_t n_fields);

#endif
