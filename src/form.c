/* babelfish — XEP-0004 data forms: the <x xmlns='jabber:x:data'/> a
 * transport's fields turn into, the parser of what users submit back, and
 * the validation of a submission against the same fields.
 *
 * A submitted form is hostile input: the parser caps the number of fields,
 * of values per field and the size of each value, and everything it keeps
 * is copied out of the stanza's tree, so the form outlives it.
 */
#include "babelfish/form.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"
#include "babelfish/jid.h"

/* Most <field/> elements a parsed form may have. Registration forms and
 * command steps have a handful; this is far above any of them. */
#define FORM_FIELDS_MAX 256
/* The parser accepts values up to this, so that validation can tell the
 * user which field is too long (against its max_length) rather than the
 * whole form being a bare bad-request. */
#define PARSE_VALUE_MAX (BF_FORM_VALUE_MAX * 4)

/* XEP-0068 §3: the hidden field naming the form's namespace. */
#define FORM_TYPE_VAR "FORM_TYPE"

/* One field of a form: its var and values (each malloc'd). */
typedef struct entry {
  char *var;
  char **values;
  size_t n_values;
  size_t cap;
} entry;

struct bf_form {
  char *type;
  entry *entries;   /* in document order; lookups are linear (few fields) */
  size_t n_entries;
  size_t cap;
};

/* ---- values -------------------------------------------------------------- */

/* Frees the values but keeps the array, so one value fits back without an
 * allocation. */
static void entry_drop_values(entry *e) {
  for (size_t i = 0; i < e->n_values; i++)
    free(e->values[i]);
  e->n_values = 0;
}

static void entry_close(entry *e) {
  entry_drop_values(e);
  free(e->values);
  free(e->var);
  memset(e, 0, sizeof *e);
}

/* Appends value (taken, freed on failure). 0 or BF_ENOMEM. */
static int entry_push(entry *e, char *value) {
  if (!value)
    return BF_ENOMEM;
  if (e->n_values == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 2;
    char **values = realloc(e->values, cap * sizeof *values);
    if (!values) {
      free(value);
      return BF_ENOMEM;
    }
    e->values = values;
    e->cap = cap;
  }
  e->values[e->n_values++] = value;
  return 0;
}

static bool entry_has(const entry *e, const char *value) {
  for (size_t i = 0; i < e->n_values; i++)
    if (strcmp(e->values[i], value) == 0)
      return true;
  return false;
}

static entry *find(const bf_form *form, const char *var) {
  for (size_t i = 0; i < form->n_entries; i++)
    if (strcmp(form->entries[i].var, var) == 0)
      return &form->entries[i];
  return NULL;
}

/* A new field without values. var: copied. NULL on ENOMEM. */
static entry *add_entry(bf_form *form, const char *var) {
  if (form->n_entries == form->cap) {
    size_t cap = form->cap ? form->cap * 2 : 8;
    entry *entries = realloc(form->entries, cap * sizeof *entries);
    if (!entries)
      return NULL;
    form->entries = entries;
    form->cap = cap;
  }
  entry *e = &form->entries[form->n_entries];
  memset(e, 0, sizeof *e);
  if (!(e->var = strdup(var)))
    return NULL;
  form->n_entries++;
  return e;
}

static void remove_entry(bf_form *form, entry *e) {
  size_t i = (size_t)(e - form->entries);
  entry_close(e);
  memmove(e, e + 1, (form->n_entries - i - 1) * sizeof *e);
  form->n_entries--;
}

bf_form *bf_form_new(const char *type) {
  if (!type)
    return NULL;
  bf_form *form = calloc(1, sizeof *form);
  if (!form)
    return NULL;
  if (!(form->type = strdup(type))) {
    free(form);
    return NULL;
  }
  return form;
}

void bf_form_free(bf_form *form) {
  if (!form)
    return;
  for (size_t i = 0; i < form->n_entries; i++)
    entry_close(&form->entries[i]);
  free(form->entries);
  free(form->type);
  free(form);
}

const char *bf_form_type(const bf_form *form) { return form->type; }

const char *bf_form_value(const bf_form *form, const char *var) {
  const entry *e = var ? find(form, var) : NULL;
  return e && e->n_values ? e->values[0] : NULL;
}

size_t bf_form_values(const bf_form *form, const char *var,
                      const char *const **values) {
  const entry *e = var ? find(form, var) : NULL;
  if (!e || !e->n_values) {
    *values = NULL;
    return 0;
  }
  *values = (const char *const *)e->values;
  return e->n_values;
}

int bf_form_set(bf_form *form, const char *var, const char *value) {
  if (!form || !var)
    return BF_EINVAL;
  entry *e = find(form, var);
  if (!value) {
    if (e)
      remove_entry(form, e);
    return 0;
  }
  char *copy = strdup(value);
  if (!copy)
    return BF_ENOMEM;
  bool created = !e;
  if (created && !(e = add_entry(form, var))) {
    free(copy);
    return BF_ENOMEM;
  }
  entry_drop_values(e);
  int rc = entry_push(e, copy);
  /* Only a new field can fail here (an old one kept its array): don't
   * leave it behind without a value. */
  if (rc && created)
    remove_entry(form, e);
  return rc;
}

int bf_form_add_value(bf_form *form, const char *var, const char *value) {
  if (!form || !var || !value)
    return BF_EINVAL;
  entry *e = find(form, var);
  if (e && e->n_values >= BF_FORM_VALUES_MAX)
    return BF_E2BIG;
  bool created = !e;
  if (created && !(e = add_entry(form, var)))
    return BF_ENOMEM;
  int rc = entry_push(e, strdup(value));
  if (rc && created)
    remove_entry(form, e);
  return rc;
}

/* ---- parsing -------------------------------------------------------------- */

static bool is_data(const bf_xml *el, const char *name) {
  return strcmp(bf_xml_name(el), name) == 0 &&
         strcmp(bf_xml_xmlns(el), BF_NS_DATA) == 0;
}

/* XEP-0004 §3.1: the four form types. */
static bool known_form_type(const char *type) {
  static const char *const types[] = {"form", "submit", "cancel", "result"};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcmp(type, types[i]) == 0)
      return true;
  return false;
}

static int parse_field(bf_form *form, const bf_xml *field) {
  const char *var = bf_xml_attr(field, "var");
  const char *type = bf_xml_attr(field, "type");
  /* §3.3: a fixed field is text for the reader, not data. */
  if (type && strcmp(type, "fixed") == 0)
    return 0;
  /* §3.2: every other field has a var that identifies it uniquely; a
   * second one would make "the value of var" ambiguous. An unknown field
   * type is text-single (§3.3), which changes nothing here. */
  if (!var || !*var || find(form, var))
    return BF_EINVAL;
  entry *e = add_entry(form, var);
  if (!e)
    return BF_ENOMEM;
  for (const bf_xml *v = bf_xml_first_child(field); v; v = bf_xml_next(v)) {
    if (!is_data(v, "value"))
      continue;
    if (e->n_values >= BF_FORM_VALUES_MAX)
      return BF_EINVAL;
    /* Only the value's own character data: child elements are junk. */
    const char *text = bf_xml_text(v);
    if (!text)
      return BF_ENOMEM;
    size_t len = strlen(text);
    if (len > PARSE_VALUE_MAX)
      return BF_EINVAL;
    int rc = entry_push(e, strndup(text, len));
    if (rc)
      return rc;
  }
  return 0;
}

int bf_form_parse(const bf_xml *x, bf_form **out) {
  int rc = 0;
  bf_form *form = NULL;
  if (!out)
    return BF_EINVAL;
  *out = NULL;
  if (!x || !is_data(x, "x"))
    return BF_EINVAL;
  /* §3.1: type is required and one of four. */
  const char *type = bf_xml_attr(x, "type");
  if (!type || !known_form_type(type))
    return BF_EINVAL;
  if (!(form = bf_form_new(type)))
    return BF_ENOMEM;
  /* §3.2: a cancel carries no fields; whatever it holds is not data. */
  if (strcmp(type, "cancel") == 0)
    goto out;
  /* Only direct <field/> children: <reported/> and <item/> (§3.4) are
   * tables of results, which a form-processing entity never receives. */
  size_t n_fields = 0;
  for (const bf_xml *f = bf_xml_first_child(x); f; f = bf_xml_next(f)) {
    if (!is_data(f, "field"))
      continue;
    if (++n_fields > FORM_FIELDS_MAX) {
      rc = BF_EINVAL;
      goto out;
    }
    if ((rc = parse_field(form, f)))
      goto out;
  }
out:
  if (rc) {
    bf_form_free(form);
    form = NULL;
  }
  *out = form;
  return rc;
}

/* ---- validation ----------------------------------------------------------- */

/* §3.2: all types but these carry at most one <value/> (hidden may carry
 * several). */
static bool single_valued(enum bf_field_type type) {
  return type == BF_FIELD_TEXT_SINGLE || type == BF_FIELD_TEXT_PRIVATE ||
         type == BF_FIELD_BOOLEAN || type == BF_FIELD_LIST_SINGLE ||
         type == BF_FIELD_JID_SINGLE;
}

/* Types where "" is an answer (the user cleared the text); for booleans,
 * lists and JIDs an empty value is no value at all. */
static bool keeps_empty(enum bf_field_type type) {
  return type == BF_FIELD_TEXT_SINGLE || type == BF_FIELD_TEXT_PRIVATE ||
         type == BF_FIELD_TEXT_MULTI || type == BF_FIELD_HIDDEN;
}

static bool is_list(enum bf_field_type type) {
  return type == BF_FIELD_LIST_SINGLE || type == BF_FIELD_LIST_MULTI;
}

/* What the user sees the field as. */
static const char *field_name(const bf_field *f) {
  return f->label && *f->label ? f->label : f->var;
}

/* Writes the message for the user; returns BF_EINVAL. */
__attribute__((format(printf, 3, 4))) static int fail(char *err,
                                                      size_t err_size,
                                                      const char *fmt, ...) {
  if (err && err_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return BF_EINVAL;
}

/* Appends to a message already in err, truncating at err_size. */
static void append(char *err, size_t err_size, const char *text) {
  if (!err || !err_size)
    return;
  size_t len = strlen(err);
  snprintf(err + len, err_size - len, "%s", text);
}

/* C0 controls (and DEL) have no place in a form value: newlines are how
 * text-multi splits lines (§3.3), and in a single-line value they would
 * let a user inject a second command into a line-based protocol (IRC).
 * TAB is ordinary text. */
static bool has_control(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
      return true;
  return false;
}

static const bf_field_option *find_option(const bf_field *f, const char *v) {
  for (const bf_field_option *o = f->options; o && o->value; o++)
    if (strcmp(o->value, v) == 0)
      return o;
  return NULL;
}

static int list_error(const bf_field *f, char *err, size_t err_size) {
  int rc = fail(err, err_size, "%s must be one of: ", field_name(f));
  for (const bf_field_option *o = f->options; o && o->value; o++) {
    if (o != f->options)
      append(err, err_size, ", ");
    append(err, err_size, o->label ? o->label : o->value);
  }
  return rc;
}

/* Checks one value (NUL-terminated) of f and appends its normalised form
 * to out. 0, BF_EINVAL (message in err) or BF_ENOMEM. */
static int check_value(const bf_field *f, const char *v, entry *out,
                       char *err, size_t err_size) {
  int rc = 0;
  char *norm = NULL;
  const char *name = field_name(f);
  if (!*v)
    return keeps_empty(f->type) ? entry_push(out, strdup("")) : 0;
  if (out->n_values >= BF_FORM_VALUES_MAX)
    return fail(err, err_size, "%s has too many %s (at most %d)", name,
                f->type == BF_FIELD_TEXT_MULTI ? "lines" : "values",
                BF_FORM_VALUES_MAX);
  size_t max = f->max_length ? f->max_length : BF_FORM_VALUE_MAX;
  if (strlen(v) > max)
    return fail(err, err_size, "%s is too long (at most %zu bytes)", name,
                max);
  if (has_control(v))
    return fail(err, err_size, "%s must not contain control characters",
                name);
  switch (f->type) {
  case BF_FIELD_BOOLEAN:
    /* §3.3 and XML Schema's boolean: exactly these four lexical forms. */
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
      norm = strdup("1");
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
      norm = strdup("0");
    else
      return fail(err, err_size, "%s must be true or false", name);
    break;
  case BF_FIELD_LIST_SINGLE:
  case BF_FIELD_LIST_MULTI:
    /* §3.3: the submitter MUST NOT insert new options. */
    if (!find_option(f, v))
      return list_error(f, err, err_size);
    break;
  case BF_FIELD_JID_SINGLE:
  case BF_FIELD_JID_MULTI: {
    bf_jid jid;
    if ((rc = bf_jid_parse(&jid, v)))
      return rc == BF_ENOMEM ? rc
                             : fail(err, err_size, "%s is not a valid JID",
                                    name);
    norm = bf_jid_full(&jid);
    bf_jid_close(&jid);
    if (!norm)
      return BF_ENOMEM;
    break;
  }
  default:
    break;
  }
  if (!norm && !(norm = strdup(v)))
    return BF_ENOMEM;
  /* §3.3: duplicate JIDs in a jid-multi MUST be ignored; a list-multi
   * option chosen twice is chosen once. */
  if ((f->type == BF_FIELD_JID_MULTI || f->type == BF_FIELD_LIST_MULTI) &&
      entry_has(out, norm)) {
    free(norm);
    return 0;
  }
  if (f->validate) {
    char msg[256] = "";
    rc = f->validate(norm, msg, sizeof msg);
    if (rc) {
      free(norm);
      if (rc == BF_ENOMEM)
        return rc;
      return *msg ? fail(err, err_size, "%s", msg)
                  : fail(err, err_size, "%s is not valid", name);
    }
  }
  return entry_push(out, norm);
}

/* §3.3: text-multi is one <value/> per line; clients that send one value
 * with line breaks in it get it split the same way. A final line break
 * ends the last line rather than starting an empty one. */
static int check_lines(const bf_field *f, const char *v, entry *out,
                       char *err, size_t err_size) {
  const char *p = v;
  do {
    size_t n = strcspn(p, "\r\n");
    char *line = strndup(p, n);
    if (!line)
      return BF_ENOMEM;
    int rc = check_value(f, line, out, err, err_size);
    free(line);
    if (rc)
      return rc;
    p += n;
    if (*p == '\r' && p[1] == '\n')
      p++;
    if (*p)
      p++;
  } while (*p);
  return 0;
}

static int validate_field(bf_form *form, const bf_field *f, char *err,
                          size_t err_size) {
  int rc = 0;
  entry out = {0};
  entry *e = find(form, f->var);
  size_t n = e ? e->n_values : 0;
  const char *name = field_name(f);
  /* §3.2: all other field types MUST NOT contain more than one value. */
  if (n > 1 && single_valued(f->type)) {
    rc = fail(err, err_size, "%s takes only one value", name);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    rc = f->type == BF_FIELD_TEXT_MULTI
             ? check_lines(f, e->values[i], &out, err, err_size)
             : check_value(f, e->values[i], &out, err, err_size);
    if (rc)
      goto out;
  }
  if (f->required) {
    bool answered = false;
    for (size_t i = 0; i < out.n_values && !answered; i++)
      answered = *out.values[i] != '\0';
    if (!answered) {
      rc = fail(err, err_size, "%s is required", name);
      goto out;
    }
  }
  if (e) {
    entry_drop_values(e);
    free(e->values);
    e->values = out.values;
    e->n_values = out.n_values;
    e->cap = out.cap;
    memset(&out, 0, sizeof out);
  }
out:
  entry_close(&out);
  return rc;
}

static const bf_field *declaration(const bf_field *fields, size_t n_fields,
                                   const char *var) {
  for (size_t i = 0; fields && i < n_fields; i++)
    if (fields[i].var && strcmp(fields[i].var, var) == 0)
      return &fields[i];
  return NULL;
}

static bool declared(const bf_field *fields, size_t n_fields,
                     const char *var) {
  const bf_field *f = declaration(fields, n_fields, var);
  return f && f->type != BF_FIELD_FIXED;
}

int bf_form_validate(bf_form *form, const bf_field *fields, size_t n_fields,
                     const char **bad_var, char *err, size_t err_size) {
  int rc = 0;
  const bf_field *bad = NULL;
  if (bad_var)
    *bad_var = NULL;
  if (err && err_size)
    *err = '\0';
  if (!form || (!fields && n_fields))
    return BF_EINVAL;
  for (size_t i = 0; i < n_fields; i++) {
    const bf_field *f = &fields[i];
    if (f->type == BF_FIELD_FIXED || !f->var)
      continue;
    if ((rc = validate_field(form, f, err, err_size))) {
      bad = f;
      goto out;
    }
  }
  /* §3.1: fields the form-processing entity does not understand MUST be
   * ignored; dropping them keeps them out of anything stored. FORM_TYPE
   * (XEP-0068) stays for the caller to check. */
  for (size_t i = 0; i < form->n_entries;) {
    const char *var = form->entries[i].var;
    if (strcmp(var, FORM_TYPE_VAR) == 0 || declared(fields, n_fields, var))
      i++;
    else
      remove_entry(form, &form->entries[i]);
  }
out:
  if (rc && bad_var)
    *bad_var = bad->var;
  return rc;
}

/* ---- building ------------------------------------------------------------- */

/* §3.3 names. */
static const char *field_type_name(enum bf_field_type type) {
  switch (type) {
  case BF_FIELD_TEXT_PRIVATE:
    return "text-private";
  case BF_FIELD_TEXT_MULTI:
    return "text-multi";
  case BF_FIELD_BOOLEAN:
    return "boolean";
  case BF_FIELD_LIST_SINGLE:
    return "list-single";
  case BF_FIELD_LIST_MULTI:
    return "list-multi";
  case BF_FIELD_JID_SINGLE:
    return "jid-single";
  case BF_FIELD_JID_MULTI:
    return "jid-multi";
  case BF_FIELD_HIDDEN:
    return "hidden";
  case BF_FIELD_FIXED:
    return "fixed";
  case BF_FIELD_TEXT_SINGLE:
  default:
    return "text-single";
  }
}

static int add_value(bf_xml *field, const char *value) {
  return bf_xml_add_text_child(field, "value", NULL, value) ? 0 : BF_ENOMEM;
}

/* The values shown in a field: the current ones, else the default; never
 * a text-private's (a stored password is not sent back). */
static int add_field_values(bf_xml *field, const bf_field *f,
                            const bf_form *current) {
  if (f->type == BF_FIELD_TEXT_PRIVATE)
    return 0;
  const entry *e = current ? find(current, f->var) : NULL;
  if (e && e->n_values) {
    /* §3.2: single-valued types carry one <value/> at most. */
    size_t n = single_valued(f->type) ? 1 : e->n_values;
    for (size_t i = 0; i < n; i++)
      if (add_value(field, e->values[i]))
        return BF_ENOMEM;
    return 0;
  }
  return f->default_value ? add_value(field, f->default_value) : 0;
}

static int add_field(bf_xml *x, const bf_field *f, const bf_form *current) {
  bf_xml *field = bf_xml_add_child(x, "field", NULL);
  if (!field || bf_xml_set_attr(field, "type", field_type_name(f->type)))
    return BF_ENOMEM;
  /* §3.3: a fixed field's text is its value. */
  if (f->type == BF_FIELD_FIXED)
    return f->label && add_value(field, f->label) ? BF_ENOMEM : 0;
  if ((f->label && bf_xml_set_attr(field, "label", f->label)) ||
      bf_xml_set_attr(field, "var", f->var))
    return BF_ENOMEM;
  if (f->desc && !bf_xml_add_text_child(field, "desc", NULL, f->desc))
    return BF_ENOMEM;
  if (f->required && !bf_xml_add_child(field, "required", NULL))
    return BF_ENOMEM;
  if (add_field_values(field, f, current))
    return BF_ENOMEM;
  /* §3.2: options only in list fields. */
  if (!is_list(f->type))
    return 0;
  for (const bf_field_option *o = f->options; o && o->value; o++) {
    bf_xml *option = bf_xml_add_child(field, "option", NULL);
    if (!option ||
        bf_xml_set_attr(option, "label", o->label ? o->label : o->value) ||
        add_value(option, o->value))
      return BF_ENOMEM;
  }
  return 0;
}

/* <x xmlns='jabber:x:data' type=…> with its title, or NULL on ENOMEM. */
static bf_xml *add_x(bf_xml *parent, const char *type, const char *title) {
  bf_xml *x = bf_xml_add_child(parent, "x", BF_NS_DATA);
  if (!x)
    return NULL;
  if (bf_xml_set_attr(x, "type", type) ||
      (title && !bf_xml_add_text_child(x, "title", NULL, title))) {
    bf_xml_remove(parent, x);
    return NULL;
  }
  return x;
}

static int add_form_type(bf_xml *x, const char *form_type) {
  bf_xml *field = bf_xml_add_child(x, "field", NULL);
  if (!field || bf_xml_set_attr(field, "type", "hidden") ||
      bf_xml_set_attr(field, "var", FORM_TYPE_VAR) ||
      add_value(field, form_type))
    return BF_ENOMEM;
  return 0;
}

bf_xml *bf_form_add(bf_xml *parent, const char *type, const char *form_type,
                    const char *title, const char *instructions,
                    const bf_field *fields, size_t n_fields,
                    const bf_form *current) {
  if (!parent || !type || (!fields && n_fields))
    return NULL;
  bf_xml *x = add_x(parent, type, title);
  if (!x)
    return NULL;
  if (instructions && !bf_xml_add_text_child(x, "instructions", NULL,
                                             instructions))
    goto fail;
  if (form_type && add_form_type(x, form_type))
    goto fail;
  for (size_t i = 0; i < n_fields; i++) {
    /* §3.2: only fixed fields may go without a var. */
    if (!fields[i].var && fields[i].type != BF_FIELD_FIXED)
      continue;
    if (add_field(x, &fields[i], current))
      goto fail;
  }
  return x;
fail:
  /* The nodes stay in the arena until the tree is freed; unlinked, they
   * are never sent. */
  bf_xml_remove(parent, x);
  return NULL;
}

bf_xml *bf_form_add_result(bf_xml *parent, const char *title,
                           const bf_form *form, const bf_field *fields,
                           size_t n_fields) {
  if (!parent)
    return NULL;
  bf_xml *x = add_x(parent, "result", title);
  if (!x)
    return NULL;
  for (size_t i = 0; form && i < form->n_entries; i++) {
    const entry *e = &form->entries[i];
    const bf_field *f = declaration(fields, n_fields, e->var);
    /* A secret is never shown back, whoever holds it. */
    if (f && f->type == BF_FIELD_TEXT_PRIVATE)
      continue;
    bf_xml *field = bf_xml_add_child(x, "field", NULL);
    if (!field)
      goto fail;
    /* XEP-0068 §3: FORM_TYPE is a hidden field wherever it appears. */
    const char *type = strcmp(e->var, FORM_TYPE_VAR) == 0 ? "hidden"
                       : f ? field_type_name(f->type) : NULL;
    if (type && bf_xml_set_attr(field, "type", type))
      goto fail;
    if (bf_xml_set_attr(field, "var", e->var))
      goto fail;
    if (f && f->label && bf_xml_set_attr(field, "label", f->label))
      goto fail;
    for (size_t k = 0; k < e->n_values; k++)
      if (add_value(field, e->values[k]))
        goto fail;
  }
  return x;
fail:
  bf_xml_remove(parent, x);
  return NULL;
}
