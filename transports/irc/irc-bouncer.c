/* Persistent channels (bouncer mode). A channel the user made persistent
 * (the configure command on the room's JID) stays joined on IRC while no
 * resource of the user is in the room, whether they left it or went
 * offline: its lines keep being stored as history and are replayed when
 * they join again (irc-channel.c), and the connection is marked AWAY
 * meanwhile, so that IRC users writing to them are told (their private
 * messages go to the user's bare JID through the durable outbox: the XMPP
 * server keeps them as offline messages). At start-up the connections of
 * users with persistent channels come back without the users being
 * online, BF_IRC_RESTORE_PER_TICK per tick. */
#include "irc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct bf_irc_restore {
  char *user, *server;
};

uint64_t bf_irc_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void bf_irc_away_update(bf_irc_conn *c) {
  bool in_a_room = false;
  for (const bf_irc_channel *ch = c->channels; ch && !in_a_room; ch = ch->next)
    in_a_room = ch->n_members > 0;
  bool away = c->channels && !in_a_room;
  if (away == c->away || c->state != BF_IRC_ONLINE)
    return;
  /* RFC 2812 §4.1: AWAY with a text sets it, without one removes it. */
  const char *params[] = {"Away: reading later through an XMPP gateway"};
  if (bf_irc_send(c, "AWAY", params, away ? 1 : 0, true) == 0)
    c->away = away;
}

/* ---- start-up --------------------------------------------------------------- */

static void add_pair(void *data, const char *user, const char *server,
                     const char *channel) {
  bf_irc *irc = data;
  (void)channel;
  if (irc->n_restore % 64 == 0) {
    struct bf_irc_restore *grown =
        realloc(irc->restore, (irc->n_restore + 64) * sizeof *grown);
    if (!grown)
      return;
    irc->restore = grown;
  }
  struct bf_irc_restore *r = &irc->restore[irc->n_restore];
  r->user = strdup(user);
  r->server = strdup(server);
  if (!r->user || !r->server) {
    free(r->user);
    free(r->server);
    return;
  }
  irc->n_restore++;
}

int bf_irc_bouncer_init(bf_irc *irc) {
  int rc = bf_irc_persistent_each(irc, NULL, NULL, add_pair, irc);
  if (irc->n_restore)
    irc->host->log(irc->host, BF_LOG_INFO,
                   "%zu IRC connections with persistent channels to restore, "
                   "%d a second", irc->n_restore,
                   BF_IRC_RESTORE_PER_TICK * (int)(1000 / BF_IRC_TICK_MS));
  return rc;
}

typedef struct restore_ctx {
  bf_irc *irc;
  bf_irc_conn *conn;
  size_t channels;
} restore_ctx;

/* One persistent channel of the user: on the connection (started by the
 * first one, with the nick stored when the user left), joined now or
 * once registered. */
static void restore_channel(void *data, const char *user, const char *server,
                            const char *name) {
  restore_ctx *r = data;
  bf_irc *irc = r->irc;
  bf_form *f = NULL;
  if (bf_irc_channel_settings_load(irc, user, server, name, &f) != 0)
    return;
  const char *nick = bf_form_value(f, "nick");
  const char *left_at = bf_form_value(f, "left_at");
  bf_irc_channel *ch = NULL;
  if (!r->conn && !(r->conn = bf_irc_conn_find(irc, user, server))) {
    if (!nick) {
      irc->host->log(irc->host, BF_LOG_INFO, "%s on %s: %s is persistent but "
                     "was never joined: not restored", user, server, name);
      goto out;
    }
    if (bf_irc_conns_of(irc, user) >= BF_IRC_SERVERS_PER_USER_MAX ||
        !(r->conn = bf_irc_conn_get(irc, user, server, nick)))
      goto out;
  }
  bf_irc_conn *c = r->conn;
  size_t n = 0;
  for (bf_irc_channel *k = c->channels; k; k = k->next) {
    if (!strcasecmp(k->name, name))
      goto out; /* the user joined it meanwhile */
    n++;
  }
  if (n >= BF_IRC_CHANNELS_PER_CONN_MAX || !(ch = calloc(1, sizeof *ch)) ||
      !(ch->name = strdup(name)) ||
      !(ch->room = bf_irc_jid(irc, server, name))) {
    if (ch)
      bf_irc_channel_free(ch);
    goto out;
  }
  bf_irc_channel_settings_apply(c, ch);
  ch->away_since_ms = left_at ? strtoull(left_at, NULL, 10) : 0;
  ch->next = c->channels;
  c->channels = ch;
  r->channels++;
  if (c->state == BF_IRC_ONLINE) {
    const char *params[] = {ch->name};
    (void)bf_irc_send(c, "JOIN", params, 1, false);
  }
out:
  bf_form_free(f);
}

void bf_irc_bouncer_tick(bf_irc *irc) {
  if (!irc->restore)
    return;
  int started = 0;
  for (; started < BF_IRC_RESTORE_PER_TICK && irc->restore_at < irc->n_restore;
       started++) {
    struct bf_irc_restore *p = &irc->restore[irc->restore_at++];
    restore_ctx r = {irc, NULL, 0};
    (void)bf_irc_persistent_each(irc, p->user, p->server, restore_channel, &r);
    irc->host->log(irc->host, BF_LOG_DEBUG, "%s on %s: %zu persistent "
                   "channels restored", p->user, p->server, r.channels);
    free(p->user);
    free(p->server);
  }
  irc->host->log(irc->host, BF_LOG_INFO, "restored %d IRC connections, %zu "
                 "to go", started, irc->n_restore - irc->restore_at);
  if (irc->restore_at == irc->n_restore) {
    free(irc->restore);
    irc->restore = NULL;
    irc->n_restore = irc->restore_at = 0;
  }
}

void bf_irc_bouncer_close(bf_irc *irc) {
  /* Those in a persistent room now leave it with the shutdown: their
   * missed lines start here at the next start. */
  uint64_t now = bf_irc_wall_ms();
  for (bf_irc_conn *c = irc->conns; c; c = c->next) {
    for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
      if (ch->persistent && ch->n_members)
        (void)bf_irc_channel_state_save(irc, c->user, c->server, ch->name,
                                        c->wanted_nick, now);
    }
  }
  for (size_t i = irc->restore_at; i < irc->n_restore; i++) {
    free(irc->restore[i].user);
    free(irc->restore[i].server);
  }
  free(irc->restore);
  irc->restore = NULL;
  irc->n_restore = irc->restore_at = 0;
}

void bf_irc_user_forget(bf_irc *irc, const char *user) {
  for (bf_irc_conn *c = irc->conns, *next; c; c = next) {
    next = c->next;
    if (!strcmp(c->user, user) && c->state != BF_IRC_CLOSING &&
        !c->shutting_down)
      bf_irc_conn_quit(c, "Gateway: the user unregistered");
  }
  (void)bf_irc_settings_delete_user(irc, user);
}
