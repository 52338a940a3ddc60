/* A gateway's users: who may use it, registration (XEP-0077) and its
 * storage, jabber:iq:gateway (XEP-0100 §6), unregistration, and the
 * in-memory table of users that presence.c and adhoc.c share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "babelfish/stanza.h"
#include "gateway.h"
#include "log.h"
#include "util.h"

#define NS_REGISTER "jabber:iq:register"
#define NS_GATEWAY "jabber:iq:gateway"
/* XEP-0100 §6: what a user may type at the prompt. */
#define GATEWAY_ADDRESS_MAX 1023

/* ---- the table of users ----------------------------------------------- */

static size_t hash(const char *s) {
  size_t h = 14695981039346656037u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

bf_user *bf__users_find(bf_gateway *gw, const char *bare) {
  bf_users *u = &gw->users;
  if (!u->n_buckets)
    return NULL;
  for (bf_user *user = u->buckets[hash(bare) & (u->n_buckets - 1)]; user;
       user = user->next) {
    if (!strcmp(user->jid, bare))
      return user;
  }
  return NULL;
}

static int grow(bf_users *u) {
  size_t n = u->n_buckets ? u->n_buckets * 2 : 64;
  bf_user **buckets = calloc(n, sizeof *buckets);
  if (!buckets)
    return BF_ENOMEM;
  for (size_t i = 0; i < u->n_buckets; i++) {
    for (bf_user *user = u->buckets[i], *next; user; user = next) {
      next = user->next;
      size_t b = hash(user->jid) & (n - 1);
      user->next = buckets[b];
      buckets[b] = user;
    }
  }
  free(u->buckets);
  u->buckets = buckets;
  u->n_buckets = n;
  return 0;
}

bf_user *bf__users_get(bf_gateway *gw, const char *bare) {
  bf_users *u = &gw->users;
  bf_user *user = bf__users_find(gw, bare);
  if (user)
    return user;
  if (u->count >= u->n_buckets && grow(u) != 0)
    return NULL;
  user = calloc(1, sizeof *user);
  if (!user || !(user->jid = strdup(bare))) {
    free(user);
    return NULL;
  }
  size_t b = hash(bare) & (u->n_buckets - 1);
  user->next = u->buckets[b];
  u->buckets[b] = user;
  u->count++;
  return user;
}

static void user_free(bf_user *user) {
  for (size_t i = 0; i < user->n_resources; i++)
    free(user->resources[i]);
  free(user->resources);
  free(user->resource_seen);
  for (size_t i = 0; i < user->n_contacts; i++) {
    free(user->contacts[i].contact);
    free(user->contacts[i].show);
    free(user->contacts[i].status);
  }
  free(user->contacts);
  free(user->jid);
  free(user);
}

void bf__users_release(bf_gateway *gw, bf_user *user) {
  bf_users *u = &gw->users;
  if (!user || user->registered || user->n_resources || user->n_contacts ||
      user->session)
    return;
  for (bf_user **p = &u->buckets[hash(user->jid) & (u->n_buckets - 1)]; *p;
       p = &(*p)->next) {
    if (*p == user) {
      *p = user->next;
      u->count--;
      user_free(user);
      return;
    }
  }
}

void bf__users_walk(bf_gateway *gw, void (*cb)(void *data, bf_user *user),
                    void *data) {
  bf_users *u = &gw->users;
  for (size_t i = 0; i < u->n_buckets; i++) {
    for (bf_user *user = u->buckets[i], *next; user; user = next) {
      next = user->next;
      cb(data, user);
    }
  }
}

/* ---- storage ----------------------------------------------------------- */

static int prepare(bf_gateway *gw, struct sqlite3_stmt **st, const char *sql) {
  sqlite3 *db = bf__store_db(gw->daemon->store);
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
      SQLITE_OK) {
    bf__error(gw->conf->section, "cannot prepare '%s': %s", sql,
              sqlite3_errmsg(db));
    return BF_EIO;
  }
  return 0;
}

/* Binds the gateway as ?1 and each string argument as ?2, ?3, … */
static void bind_args(bf_gateway *gw, struct sqlite3_stmt *st, const char *a,
                 const char *b) {
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, gw->conf->domain, -1, SQLITE_STATIC);
  if (a)
    sqlite3_bind_text(st, 2, a, -1, SQLITE_STATIC);
  if (b)
    sqlite3_bind_text(st, 3, b, -1, SQLITE_STATIC);
}

/* Runs a statement that returns no rows. 0 or BF_EIO (logged). */
static int run(bf_gateway *gw, struct sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW)
    return 0;
  bf__error(gw->conf->section, "database: cannot %s: %s", what,
            sqlite3_errmsg(bf__store_db(gw->daemon->store)));
  return BF_EIO;
}

static int exec(bf_gateway *gw, const char *sql) {
  sqlite3 *db = bf__store_db(gw->daemon->store);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
    return 0;
  bf__error(gw->conf->section, "database: %s failed: %s", sql,
            sqlite3_errmsg(db));
  return BF_EIO;
}

int bf__users_init(bf_gateway *gw) {
  bf_users *u = &gw->users;
  int rc = 0;
  u->open = true;
  if ((rc = prepare(gw, &u->st_load,
                    "SELECT jid FROM users WHERE gateway = ?1")) ||
      (rc = prepare(gw, &u->st_values,
                    "SELECT var, value FROM user_values WHERE gateway = ?1 "
                    "AND jid = ?2 ORDER BY var, idx")) ||
      (rc = prepare(gw, &u->st_insert,
                    "INSERT OR IGNORE INTO users(gateway, jid, created) "
                    "VALUES (?1, ?2, ?3)")) ||
      (rc = prepare(gw, &u->st_delete,
                    "DELETE FROM users WHERE gateway = ?1 AND jid = ?2")) ||
      (rc = prepare(gw, &u->st_delete_values,
                    "DELETE FROM user_values WHERE gateway = ?1 AND jid = ?2")) ||
      (rc = prepare(gw, &u->st_insert_value,
                    "INSERT INTO user_values(gateway, jid, var, idx, value) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)")) ||
      (rc = prepare(gw, &u->st_delete_value,
                    "DELETE FROM user_values WHERE gateway = ?1 AND jid = ?2 "
                    "AND var = ?3")) ||
      (rc = prepare(gw, &u->st_delete_contacts,
                    "DELETE FROM contacts WHERE gateway = ?1 AND jid = ?2")) ||
      (rc = prepare(gw, &u->st_contact_get,
                    "SELECT subscription FROM contacts WHERE gateway = ?1 AND "
                    "jid = ?2 AND contact = ?3")) ||
      (rc = prepare(gw, &u->st_contact_set,
                    "INSERT OR REPLACE INTO contacts(gateway, jid, contact, "
                    "subscription) VALUES (?1, ?2, ?3, ?4)")) ||
      (rc = prepare(gw, &u->st_contact_delete,
                    "DELETE FROM contacts WHERE gateway = ?1 AND jid = ?2 AND "
                    "contact = ?3")) ||
      (rc = prepare(gw, &u->st_contacts_of,
                    "SELECT contact, subscription FROM contacts WHERE "
                    "gateway = ?1 AND jid = ?2 AND contact <> '' ORDER BY "
                    "contact")) ||
      (rc = prepare(gw, &u->st_contacts_count,
                    "SELECT count(*) FROM contacts WHERE gateway = ?1 AND "
                    "jid = ?2 AND contact <> ''")))
    return rc;
  bind_args(gw, u->st_load, NULL, NULL);
  int step;
  while ((step = sqlite3_step(u->st_load)) == SQLITE_ROW) {
    bf_user *user = bf__users_get(gw, (const char *)sqlite3_column_text(u->st_load, 0));
    if (!user) {
      sqlite3_reset(u->st_load);
      return BF_ENOMEM;
    }
    if (!user->registered) {
      user->registered = true;
      u->registered++;
    }
  }
  sqlite3_reset(u->st_load);
  if (step != SQLITE_DONE)
    return run(gw, u->st_load, "load the registered users");
  if ((rc = bf__msgid_init(gw)))
    return rc;
  bf__info(gw->conf->section, "%zu registered user%s", u->registered,
           u->registered == 1 ? "" : "s");
  return 0;
}

void bf__users_close(bf_gateway *gw) {
  bf_users *u = &gw->users;
  bf__adhoc_close(gw);
  bf__msgid_close(gw);
  struct sqlite3_stmt *all[] = {
      u->st_load,          u->st_values,         u->st_insert,
      u->st_delete,        u->st_delete_values,  u->st_insert_value,
      u->st_delete_value,  u->st_delete_contacts, u->st_contact_get,
      u->st_contact_set,   u->st_contact_delete, u->st_contacts_of,
      u->st_contacts_count,
  };
  for (size_t i = 0; i < BF_ARRAY_SIZE(all); i++)
    sqlite3_finalize(all[i]);
  for (size_t i = 0; i < u->n_buckets; i++) {
    for (bf_user *user = u->buckets[i], *next; user; user = next) {
      next = user->next;
      user_free(user);
    }
  }
  free(u->buckets);
  memset(u, 0, sizeof *u);
}

/* ---- who may use the gateway -------------------------------------------- */

bool bf__users_is_admin(const bf_gateway *gw, const bf_jid *jid) {
  const bf_conf *conf = gw->daemon->conf;
  if (!jid->local)
    return false;
  for (size_t i = 0; i < conf->n_admins; i++) {
    const char *admin = conf->admins[i];
    const char *at = strchr(admin, '@');
    size_t len = strlen(jid->local);
    if (at && (size_t)(at - admin) == len && !memcmp(admin, jid->local, len) &&
        !strcmp(at + 1, jid->domain))
      return true;
  }
  return false;
}

bool bf__users_allowed(const bf_gateway *gw, const bf_jid *jid) {
  const bf_conf_gateway *conf = gw->conf;
  if (conf->allow_all || bf__users_is_admin(gw, jid))
    return true;
  size_t local_len = jid->local ? strlen(jid->local) : 0;
  for (size_t i = 0; i < conf->n_allowed; i++) {
    const char *entry = conf->allowed[i];
    const char *at = strchr(entry, '@');
    if (!at) {
      if (!strcmp(entry, jid->domain))
        return true;
    } else if (jid->local && (size_t)(at - entry) == local_len &&
               !memcmp(entry, jid->local, local_len) &&
               !strcmp(at + 1, jid->domain)) {
      return true;
    }
  }
  return false;
}

bool bf__users_registered(bf_gateway *gw, const char *bare) {
  bf_user *user = bf__users_find(gw, bare);
  return user && user->registered;
}

/* ---- registration values ------------------------------------------------ */

int bf__users_values(bf_gateway *gw, const char *bare, bf_form **values) {
  bf_users *u = &gw->users;
  *values = NULL;
  if (!bf__users_registered(gw, bare))
    return BF_ENOENT;
  bf_form *form = bf_form_new("submit");
  if (!form)
    return BF_ENOMEM;
  bind_args(gw, u->st_values, bare, NULL);
  int step, rc = 0;
  while ((step = sqlite3_step(u->st_values)) == SQLITE_ROW) {
    rc = bf_form_add_value(form,
                           (const char *)sqlite3_column_text(u->st_values, 0),
                           (const char *)sqlite3_column_text(u->st_values, 1));
    if (rc)
      break;
  }
  sqlite3_reset(u->st_values);
  if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
    rc = run(gw, u->st_values, "read a registration");
  if (rc) {
    bf_form_free(form);
    return rc;
  }
  *values = form;
  return 0;
}

int bf__users_each(bf_gateway *gw, int (*cb)(void *data, const char *bare),
                   void *data) {
  bf_users *u = &gw->users;
  /* Sorted from the database, but no statement stays open while cb runs:
   * cb may unregister or send. */
  char **jids = NULL;
  size_t n = 0, cap = 0;
  int rc = 0, step;
  sqlite3_stmt *st = NULL;
  if ((rc = prepare(gw, &st, "SELECT jid FROM users WHERE gateway = ?1 "
                             "ORDER BY jid")))
    return rc;
  bind_args(gw, st, NULL, NULL);
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **grown = realloc(jids, cap * sizeof *grown);
      if (!grown) {
        rc = BF_ENOMEM;
        goto out;
      }
      jids = grown;
    }
    if (!(jids[n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
      rc = BF_ENOMEM;
      goto out;
    }
    n++;
  }
  if (step != SQLITE_DONE) {
    rc = run(gw, st, "list the registered users");
    goto out;
  }
  sqlite3_finalize(st);
  st = NULL;
  (void)u;
  for (size_t i = 0; i < n && !rc; i++)
    rc = cb(data, jids[i]);
out:
  sqlite3_finalize(st);
  for (size_t i = 0; i < n; i++)
    free(jids[i]);
  free(jids);
  return rc;
}

/* Stores values as the user's registration, replacing what was there. */
static int store_values(bf_gateway *gw, const char *bare, const bf_form *form,
                        const bf_field *fields, size_t n_fields) {
  bf_users *u = &gw->users;
  int rc = exec(gw, "BEGIN IMMEDIATE");
  if (rc)
    return rc;
  bind_args(gw, u->st_insert, bare, NULL);
  sqlite3_bind_int64(u->st_insert, 3, (sqlite3_int64)time(NULL));
  if ((rc = run(gw, u->st_insert, "store a registration")))
    goto out;
  bind_args(gw, u->st_delete_values, bare, NULL);
  if ((rc = run(gw, u->st_delete_values, "replace a registration")))
    goto out;
  for (size_t i = 0; i < n_fields; i++) {
    if (!fields[i].var || fields[i].type == BF_FIELD_FIXED)
      continue;
    const char *const *values;
    size_t n = bf_form_values(form, fields[i].var, &values);
    for (size_t j = 0; j < n; j++) {
      bind_args(gw, u->st_insert_value, bare, fields[i].var);
      sqlite3_bind_int64(u->st_insert_value, 4, (sqlite3_int64)j);
      sqlite3_bind_text(u->st_insert_value, 5, values[j], -1, SQLITE_STATIC);
      if ((rc = run(gw, u->st_insert_value, "store a registration value")))
        goto out;
    }
  }
out:
  if (rc) {
    (void)exec(gw, "ROLLBACK");
    return rc;
  }
  return exec(gw, "COMMIT");
}

int bf__users_set_value(bf_gateway *gw, const char *bare, const char *var,
                        const char *value) {
  bf_users *u = &gw->users;
  if (!bf__users_registered(gw, bare))
    return BF_ENOENT;
  int rc = exec(gw, "BEGIN IMMEDIATE");
  if (rc)
    return rc;
  bind_args(gw, u->st_delete_value, bare, var);
  rc = run(gw, u->st_delete_value, "change a registration value");
  if (!rc && value) {
    bind_args(gw, u->st_insert_value, bare, var);
    sqlite3_bind_int64(u->st_insert_value, 4, 0);
    sqlite3_bind_text(u->st_insert_value, 5, value, -1, SQLITE_STATIC);
    rc = run(gw, u->st_insert_value, "change a registration value");
  }
  if (rc) {
    (void)exec(gw, "ROLLBACK");
    return rc;
  }
  return exec(gw, "COMMIT");
}

int bf__users_register(bf_gateway *gw, const bf_jid *user, bf_form *form,
                       bool *is_new, char *err, size_t err_size) {
  const bf_module *m = bf__gateway_module_v2(gw);
  const bf_field *fields = m ? m->register_fields : NULL;
  size_t n_fields = m && fields ? m->n_register_fields : 0;
  bf_form *stored = NULL;
  char bare[BF_JID_STACK_BUFFER];
  int rc = 0;
  *is_new = false;
  err[0] = '\0';
  if (bf__bare(user, bare, sizeof bare) < 0) {
    snprintf(err, err_size, "your address is too long");
    return BF_EINVAL;
  }
  *is_new = !bf__users_registered(gw, bare);
  /* XEP-0077 §3.3: an empty password must not change the stored one. The
   * form never shows private values, so a resubmitted form has them
   * empty: keep the stored ones. */
  if (!*is_new && (rc = bf__users_values(gw, bare, &stored)) != 0)
    goto out;
  for (size_t i = 0; stored && i < n_fields; i++) {
    const char *var = fields[i].var;
    if (fields[i].type != BF_FIELD_TEXT_PRIVATE || !var)
      continue;
    const char *now = bf_form_value(form, var);
    const char *before = bf_form_value(stored, var);
    if ((!now || !*now) && before && (rc = bf_form_set(form, var, before)))
      goto out;
  }
  const char *bad_var = NULL;
  if ((rc = bf_form_validate(form, fields, n_fields, &bad_var, err, err_size)))
    goto out;
  if (m && m->on_register &&
      (rc = m->on_register(gw->state, user, form, *is_new, err, err_size))) {
    if (!err[0])
      snprintf(err, err_size, "the gateway refused this registration (%s)",
               bf_strerror(rc));
    goto out;
  }
  if ((rc = store_values(gw, bare, form, fields, n_fields))) {
    snprintf(err, err_size, "the gateway could not store your registration");
    goto out;
  }
  bf_user *entry = bf__users_get(gw, bare);
  if (!entry) {
    rc = BF_ENOMEM;
    goto out;
  }
  if (!entry->registered) {
    entry->registered = true;
    gw->users.registered++;
    gw->users.registrations++;
  }
  bf__info(gw->conf->section, "%s %s", bare,
           *is_new ? "registered" : "changed their registration");
  if (*is_new) {
    /* XEP-0100 §4.1.1: ask to be in the user's roster, and show ourselves. */
    (void)bf__users_set_subscription(
        gw, bare, "", bf__users_subscription(gw, bare, "") | BF_SUB_ASKED);
    (void)bf__presence_send(gw, NULL, bare, "subscribe", NULL, NULL);
    (void)bf__presence_send(gw, NULL, bare, NULL, NULL, NULL);
  }
out:
  bf_form_free(stored);
  return rc;
}

/* ---- unregistration ------------------------------------------------------ */

typedef struct {
  bf_gateway *gw;
  const char *bare;
} contact_walk;

/* XEP-0100 §4.3: the contacts leave the user's roster with the gateway. */
static int unsubscribe_contact(void *data, const char *contact, unsigned bits) {
  contact_walk *w = data;
  (void)bits;
  (void)bf__presence_send(w->gw, contact, w->bare, "unsubscribe", NULL, NULL);
  (void)bf__presence_send(w->gw, contact, w->bare, "unsubscribed", NULL, NULL);
  (void)bf__presence_send(w->gw, contact, w->bare, "unavailable", NULL, NULL);
  return 0;
}

int bf__users_unregister(bf_gateway *gw, const char *bare) {
  bf_users *u = &gw->users;
  bf_user *user = bf__users_find(gw, bare);
  if (!user || !user->registered)
    return BF_ENOENT;
  const bf_module *m = bf__gateway_module_v2(gw);
  bf__presence_end_session(gw, user);
  if (m && m->on_unregister) {
    bf_jid jid;
    if (bf_jid_parse(&jid, bare) == 0) {
      m->on_unregister(gw->state, &jid);
      bf_jid_close(&jid);
    }
  }
  contact_walk w = {gw, bare};
  (void)bf__users_contacts_each(gw, bare, unsubscribe_contact, &w);
  int rc = exec(gw, "BEGIN IMMEDIATE");
  if (!rc) {
    bind_args(gw, u->st_delete_contacts, bare, NULL);
    rc = run(gw, u->st_delete_contacts, "delete a user's contacts");
    bind_args(gw, u->st_delete, bare, NULL);
    if (!rc)
      rc = run(gw, u->st_delete, "delete a registration");
    if (!rc)
      rc = bf__msgid_delete_user(gw, bare);
    rc = rc ? (exec(gw, "ROLLBACK"), rc) : exec(gw, "COMMIT");
  }
  if (rc)
    return rc;
  (void)bf__presence_send(gw, NULL, bare, "unsubscribe", NULL, NULL);
  (void)bf__presence_send(gw, NULL, bare, "unsubscribed", NULL, NULL);
  (void)bf__presence_send(gw, NULL, bare, "unavailable", NULL, NULL);
  user->registered = false;
  u->registered--;
  u->unregistrations++;
  bf__info(gw->conf->section, "%s unregistered", bare);
  bf__users_release(gw, user);
  return 0;
}

/* ---- subscriptions ------------------------------------------------------- */

unsigned bf__users_subscription(bf_gateway *gw, const char *bare,
                                const char *contact) {
  bf_users *u = &gw->users;
  unsigned bits = 0;
  bind_args(gw, u->st_contact_get, bare, contact);
  if (sqlite3_step(u->st_contact_get) == SQLITE_ROW)
    bits = (unsigned)sqlite3_column_int(u->st_contact_get, 0);
  sqlite3_reset(u->st_contact_get);
  return bits;
}

int bf__users_set_subscription(bf_gateway *gw, const char *bare,
                               const char *contact, unsigned bits) {
  bf_users *u = &gw->users;
  if (!bits) {
    bind_args(gw, u->st_contact_delete, bare, contact);
    return run(gw, u->st_contact_delete, "delete a subscription");
  }
  bind_args(gw, u->st_contact_set, bare, contact);
  sqlite3_bind_int(u->st_contact_set, 4, (int)bits);
  return run(gw, u->st_contact_set, "store a subscription");
}

size_t bf__users_contacts_count(bf_gateway *gw, const char *bare) {
  bf_users *u = &gw->users;
  size_t n = 0;
  bind_args(gw, u->st_contacts_count, bare, NULL);
  if (sqlite3_step(u->st_contacts_count) == SQLITE_ROW)
    n = (size_t)sqlite3_column_int64(u->st_contacts_count, 0);
  sqlite3_reset(u->st_contacts_count);
  return n;
}

int bf__users_contacts_each(bf_gateway *gw, const char *bare,
                            int (*cb)(void *data, const char *contact,
                                      unsigned bits),
                            void *data) {
  bf_users *u = &gw->users;
  /* Collected first: cb sends stanzas and may change subscriptions. */
  typedef struct {
    char *contact;
    unsigned bits;
  } row;
  row *rows = NULL;
  size_t n = 0, cap = 0;
  int rc = 0, step;
  bind_args(gw, u->st_contacts_of, bare, NULL);
  while ((step = sqlite3_step(u->st_contacts_of)) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      row *grown = realloc(rows, cap * sizeof *grown);
      if (!grown) {
        rc = BF_ENOMEM;
        break;
      }
      rows = grown;
    }
    rows[n].contact = strdup((const char *)sqlite3_column_text(u->st_contacts_of, 0));
    rows[n].bits = (unsigned)sqlite3_column_int(u->st_contacts_of, 1);
    if (!rows[n].contact) {
      rc = BF_ENOMEM;
      break;
    }
    n++;
  }
  sqlite3_reset(u->st_contacts_of);
  if (!rc && step != SQLITE_DONE)
    rc = run(gw, u->st_contacts_of, "list a user's contacts");
  for (size_t i = 0; i < n && !rc; i++)
    rc = cb(data, rows[i].contact, rows[i].bits);
  for (size_t i = 0; i < n; i++)
    free(rows[i].contact);
  free(rows);
  return rc;
}

/* ---- jabber:iq:register (XEP-0077) and jabber:iq:gateway (XEP-0100) ------ */

/* XEP-0077 §3.1: the form, with the current values when registered. */
static void register_get(bf_gateway *gw, const bf_xml *iq, const char *bare) {
  const bf_module *m = bf__gateway_module_v2(gw);
  bf_form *current = NULL;
  bool registered = bf__users_values(gw, bare, &current) == 0;
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", NS_REGISTER) : NULL;
  const char *instructions =
      m && m->register_instructions
          ? m->register_instructions
          : "Register to use this gateway.";
  if (!query || !bf_xml_add_text_child(query, "instructions", NULL, instructions) ||
      (registered && !bf_xml_add_child(query, "registered", NULL)) ||
      !bf_form_add(query, "form", NS_REGISTER,
                   registered ? "Your registration" : "Registration",
                   instructions, m ? m->register_fields : NULL,
                   m && m->register_fields ? m->n_register_fields : 0, current)) {
    bf_xml_free(reply);
    reply = bf_stanza_error(iq, NULL, "internal-server-error", NULL);
  }
  bf__gateway_send_free(gw, reply);
  bf_form_free(current);
}

/* The submitted values: a data form, or XEP-0077 legacy fields whose names
 * match the module's field vars (old clients). */
static int submitted_form(const bf_gateway *gw, const bf_xml *query,
                          bf_form **form) {
  const bf_xml *x = bf_xml_child(query, "x", BF_NS_DATA);
  if (x)
    return bf_form_parse(x, form);
  const bf_module *m = bf__gateway_module_v2(gw);
  *form = bf_form_new("submit");
  if (!*form)
    return BF_ENOMEM;
  for (const bf_xml *c = bf_xml_first_child(query); c; c = bf_xml_next(c)) {
    if (strcmp(bf_xml_xmlns(c), NS_REGISTER) != 0)
      continue;
    for (size_t i = 0; m && m->register_fields && i < m->n_register_fields; i++) {
      const char *var = m->register_fields[i].var;
      if (var && !strcmp(var, bf_xml_name(c))) {
        const char *text = bf_xml_text(c);
        int rc = bf_form_set(*form, var, text ? text : "");
        if (rc)
          return rc;
      }
    }
  }
  return 0;
}

static void register_set(bf_gateway *gw, const bf_xml *iq, const bf_xml *query,
                         const bf_jid *from, const char *bare) {
  const bf_xml *remove = bf_xml_child(query, "remove", NS_REGISTER);
  if (remove) {
    /* XEP-0077 §3.2: <remove/> alone; the entity is known by 'from'. */
    if (bf_xml_first_child(query) != remove || bf_xml_next(remove)) {
      bf__gateway_reply_error(gw, iq, "bad-request", "<remove/> must be alone",
                              NULL, NULL);
      return;
    }
    if (!bf__users_registered(gw, bare)) {
      bf__gateway_reply_error(gw, iq, "item-not-found",
                              "you are not registered", NULL, NULL);
      return;
    }
    /* XEP-0100 §4.3: the result first, then the presences. */
    bf__gateway_send_free(gw, bf_stanza_result(iq));
    if (bf__users_unregister(gw, bare) != 0)
      bf__error(gw->conf->section, "could not delete %s's registration", bare);
    return;
  }
  bf_form *form = NULL;
  int rc = submitted_form(gw, query, &form);
  if (rc) {
    bf__gateway_reply_error(
        gw, iq, rc == BF_ENOMEM ? "internal-server-error" : "bad-request",
        rc == BF_ENOMEM ? NULL : "the registration form is malformed", NULL,
        NULL);
    goto out;
  }
  if (!strcmp(bf_form_type(form), "cancel")) {
    bf__gateway_send_free(gw, bf_stanza_result(iq));
    goto out;
  }
  char err[512];
  bool is_new;
  rc = bf__users_register(gw, from, form, &is_new, err, sizeof err);
  switch (rc) {
  case 0:
    bf__gateway_send_free(gw, bf_stanza_result(iq));
    break;
  case BF_EINVAL:
    bf__gateway_reply_error(gw, iq, "not-acceptable", err, NULL,
                            NULL); /* XEP-0077 §3.1 */
    break;
  case BF_EEXIST:
    bf__gateway_reply_error(gw, iq, "conflict", err, NULL, NULL);
    break;
  case BF_EPERM:
    bf__gateway_reply_error(gw, iq, "forbidden", err, NULL, NULL);
    break;
  default:
    bf__gateway_reply_error(gw, iq, "internal-server-error", err, NULL, NULL);
    break;
  }
out:
  bf_form_free(form);
}

/* XEP-0100 §6: a foreign address the user typed -> a JID at the gateway. */
static void gateway_iq(bf_gateway *gw, const bf_xml *iq, const bf_xml *query) {
  const bf_module *m = bf__gateway_module_v2(gw);
  bf_xml *reply = NULL;
  if (!strcmp(bf_xml_attr(iq, "type"), "get")) {
    reply = bf_stanza_result(iq);
    bf_xml *q = reply ? bf_xml_add_child(reply, "query", NS_GATEWAY) : NULL;
    if (!q ||
        !bf_xml_add_text_child(q, "desc", NULL,
                               m && m->gateway_desc
                                   ? m->gateway_desc
                                   : "Enter the address of a contact on the "
                                     "other network") ||
        !bf_xml_add_text_child(q, "prompt", NULL,
                               m && m->gateway_prompt ? m->gateway_prompt
                                                      : "Address")) {
      bf_xml_free(reply);
      reply = bf_stanza_error(iq, NULL, "internal-server-error", NULL);
    }
    bf__gateway_send_free(gw, reply);
    return;
  }
  const char *address = bf_xml_child_text(query, "prompt", NS_GATEWAY);
  if (!address || !*address || strlen(address) > GATEWAY_ADDRESS_MAX) {
    bf__gateway_reply_error(gw, iq, "bad-request",
                            "send the address in <prompt/>", NULL, NULL);
    return;
  }
  char local[GATEWAY_ADDRESS_MAX * 4 + 1];
  char *escaped = NULL;
  int rc = 0;
  if (m && m->gateway_address) {
    local[0] = '\0';
    rc = m->gateway_address(gw->state, address, local, sizeof local);
  } else if ((escaped = bf_jid_escape(address)) != NULL &&
             strlen(escaped) < sizeof local) {
    memcpy(local, escaped, strlen(escaped) + 1);
  } else {
    rc = escaped ? BF_EINVAL : BF_ENOMEM;
    snprintf(local, sizeof local, "that address is too long");
  }
  free(escaped);
  char jid_text[sizeof local + 300];
  bf_jid jid;
  if (!rc) {
    snprintf(jid_text, sizeof jid_text, "%s@%s", local, gw->conf->domain);
    if (bf_jid_parse(&jid, jid_text) != 0) {
      rc = BF_EINVAL;
      snprintf(local, sizeof local, "that address cannot be written as a JID");
    } else {
      bf_jid_close(&jid);
    }
  }
  if (rc) {
    /* XEP-0100 §6.3 leaves the condition open; the text says why. */
    bf__gateway_reply_error(gw, iq, "not-acceptable", local, NULL, NULL);
    return;
  }
  reply = bf_stanza_result(iq);
  bf_xml *q = reply ? bf_xml_add_child(reply, "query", NS_GATEWAY) : NULL;
  if (!q || !bf_xml_add_text_child(q, "jid", NULL, jid_text)) {
    bf_xml_free(reply);
    reply = bf_stanza_error(iq, NULL, "internal-server-error", NULL);
  }
  bf__gateway_send_free(gw, reply);
}

bool bf__users_iq(bf_gateway *gw, const bf_xml *iq, const bf_jid *from,
                  const bf_jid *to) {
  if (to->local || to->resource || !bf_stanza_is_request(iq))
    return false;
  const bf_xml *query = bf_xml_first_child(iq);
  const char *ns = bf_xml_xmlns(query);
  if (strcmp(bf_xml_name(query), "query") != 0)
    return false;
  if (!strcmp(ns, NS_GATEWAY)) {
    gateway_iq(gw, iq, query);
    return true;
  }
  if (strcmp(ns, NS_REGISTER) != 0)
    return false;
  char bare[BF_JID_STACK_BUFFER];
  if (!from->local || bf__bare(from, bare, sizeof bare) < 0) {
    /* A server or an over-long JID cannot register. */
    bf__gateway_reply_error(gw, iq, "not-allowed",
                            "only user accounts can register", NULL, NULL);
    return true;
  }
  if (!strcmp(bf_xml_attr(iq, "type"), "get"))
    register_get(gw, iq, bare);
  else
    register_set(gw, iq, query, from, bare);
  return true;
}
