#include "actors/client/client_actor.hpp"
#include "actors/common/tsan.hpp"

#include "actors/common/channel.hpp"
#include "actors/server/messages.hpp"
#include "codec/codec.hpp"

#include <caf/all.hpp>

#include <array>
#include <chrono>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <unistd.h>

namespace parley::cli {

using srv::bytes;
using srv::io_atom;
using srv::tick_atom;

message to_public(const store::client_message& m) {
  return to_public(store::client_message{m});
}

message to_public(store::client_message&& m) {
  message out;
  out.id = m.id;
  out.mid = m.mid;
  out.peer = std::move(m.peer);
  out.group_id = m.group_id;
  out.sender = std::move(m.sender);
  out.outgoing = m.outgoing;
  out.kind = m.kind;
  out.flags = m.flags;
  out.expiry_s = m.expiry_s;
  out.in_reply_to = m.in_reply_to;
  out.ts_ms = m.ts_ms;
  out.status = static_cast<message_status>(m.status);
  out.payload = std::move(m.payload);
  return out;
}

uint64_t wall_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
    duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count());
}

store::client_message from_wire(codec::message& m) {
  store::client_message cm;
  cm.mid = m.mid;
  cm.seq = m.seq;
  cm.peer = m.peer;
  cm.group_id = m.group_id;
  cm.sender = m.sender;
  cm.outgoing = m.outgoing;
  cm.kind = m.kind;
  cm.flags = m.flags;
  cm.in_reply_to = m.in_reply_to;
  cm.ts_ms = m.ts_ms;
  cm.status = m.outgoing
                ? static_cast<uint8_t>(codec::message_status::sent)
                : static_cast<uint8_t>(codec::message_status::received_new);
  cm.payload = std::move(m.payload);
  return cm;
}

status apply_change(client_context& ctx, uint64_t id, codec::update_kind kind,
                    const std::string& payload) {
  bool retract = kind == codec::update_kind::retract;
  bool changed = false;
  auto m = ctx.db->change(id,
                          retract ? codec::message_flags::retracted
                                  : codec::message_flags::edited,
                          retract ? std::string{} : payload, &changed);
  if (!m)
    return m.error();
  if (changed) {
    auto pub = to_public(*m);
    ctx.emit([pub](listener& l) { l.on_message_update(pub); });
  }
  return {};
}

namespace {

using namespace std::chrono;

enum class phase { idle, connecting, handshake, online, stopped };

struct client_state {
  std::shared_ptr<client_context> ctx;
  phase ph = phase::idle;
  bool wanted = false;              ///< start() was called and not stop().
  uint64_t generation = 0;          ///< Bumped per connection attempt.
  std::unique_ptr<net::channel> ch; ///< The socket of this connection.
  std::unique_ptr<tls::stream> tls;
  /// The server's newest TLS ticket (from the last login): the next
  /// connection resumes it (client_options::tls_resume).
  std::shared_ptr<const tls::ticket> ticket;
  codec::frame_parser parser{codec::max_frame_body_protocol};
  codec::buffer out;
  tls::bytes cipher;
  codec::frame frame;
  milliseconds backoff{0};
  uint64_t stored_seq = 0; ///< Highest log seq stored locally.
  uint64_t acked_seq = 0;  ///< Highest seq acked to the server.
  /// A record stored since the last ack needs its ack now: an incoming
  /// message, whose sender waits for DELIVERED. The other records (status
  /// updates of this user's own messages, events, edits) only move the
  /// cursor: their ack leaves with the next frame sent (see flush_out).
  bool ack_urgent = false;
  uint32_t window = 0; ///< login_ok.window: unacked records the server sends.
  uint64_t db_cursor = 0; ///< The cursor in the local database.
  /// login_ok.ping_interval_s: how often an idle connection pings (and
  /// with its ping, acks what waits: the bound on an idle cursor's lag).
  seconds ping_every{30};
  /// Outgoing mids sent on this connection and not answered yet: a message
  /// the facade stored while the login replayed the outbox goes out once.
  std::unordered_set<uint64_t> unanswered;
  bool flush_pending = false; ///< A flush_atom is queued.
  bool flush_wanted = false;  ///< Output waits for the end of the turn.
  /// Requests sent on this connection, by req, waiting for their answer.
  std::unordered_map<uint64_t, std::shared_ptr<std::promise<request_result>>>
    requests;
  uint64_t next_req = 0;
  std::set<std::string> watching; ///< Users whose presence we subscribed to.
  std::string address;
  std::minstd_rand rng{std::random_device{}()};
  static inline const char* name = "parley.client";
};

/// True for frames with a `req` field (requests and their answers).
template<class T, class = void>
struct has_req : std::false_type {};
template<class T>
struct has_req<T, std::void_t<decltype(std::declval<T&>().req)>>
  : std::true_type {};

using client_ptr =
  caf::stateful_actor<client_state, net::hb_actor<caf::event_based_actor>>*;

void set_status(client_ptr self, connection_status s,
                const std::string& reason = {}) {
  auto& st = self->state;
  auto old = st.ctx->status.exchange(static_cast<uint8_t>(s));
  if (old == static_cast<uint8_t>(s) && reason.empty())
    return;
  st.ctx->emit([s, reason](listener& l) { l.on_connection_status(s, reason); });
}

template<class Frame>
void put(client_ptr self, const Frame& f) {
  codec::encode(f, self->state.out);
}

/// Acknowledges everything stored, cumulatively (REQUIRES: online).
void ack_stored(client_ptr self) {
  auto& st = self->state;
  put(self, codec::ack{st.stored_seq});
  st.acked_seq = st.stored_seq;
  st.ack_urgent = false;
}

void flush_out(client_ptr self) {
  auto& st = self->state;
  // A waiting ack leaves with whatever goes now: no write of its own.
  if (!st.out.empty() && st.stored_seq > st.acked_seq && st.ph == phase::online)
    ack_stored(self);
  if (!st.out.empty() && st.tls) {
    st.tls->send(st.out.data(), st.out.size(), st.cipher);
    st.out.clear();
  }
  if (!st.cipher.empty() && st.ch) {
    // A failed write shows as a hangup on the next read.
    st.ch->write(st.cipher.data(), st.cipher.size());
    st.cipher.clear();
  }
}

/// Flushes once the messages queued now are handled: sends that arrive
/// together leave in one TLS record and one write (see end_turn).
void schedule_flush(client_ptr self) {
  self->state.flush_wanted = true;
}

/// The end of every handler (a `turn` guard): a wanted flush happens now
/// when nothing else waits in the mailbox, else after what waits (a
/// (flush) to itself). So the usual flush costs no message.
void end_turn(client_ptr self) {
  auto& st = self->state;
  if (!st.flush_wanted)
    return;
  if (st.out.empty() && st.cipher.empty()) {
    st.flush_wanted = false;
    return;
  }
  if (self->mailbox().empty()) {
    st.flush_wanted = false;
    flush_out(self);
    return;
  }
  if (!st.flush_pending) {
    st.flush_pending = true;
    self->send(self, flush_atom::value);
  }
}

/// Calls end_turn when a handler returns (by any path).
struct turn {
  client_ptr self;
  ~turn() { end_turn(self); }
};

/// Drops the connection (if any) without any status change.
void drop(client_ptr self) {
  auto& st = self->state;
  // Requests on this connection get no answer now.
  for (auto& [req, slot] : st.requests)
    slot->set_value(request_result{
      status{status_code::unavailable,
             "the connection to the server was lost before it answered: try "
             "again when the client is online"},
      {}});
  st.requests.clear();
  st.ch.reset(); // what the kernel holds still leaves, then FIN
  st.tls.reset();
  st.ctx->resumed.store(false, std::memory_order_relaxed);
  st.unanswered.clear();
  st.out.clear();
  st.cipher.clear();
  st.ack_urgent = false;
  ++st.generation; // (the parser is reset when the next connection starts)
}

void connect(client_ptr self);

/// Reconnects after a delay with exponential backoff and jitter.
void retry_later(client_ptr self) {
  auto& st = self->state;
  if (!st.wanted || st.ph == phase::stopped)
    return;
  auto& o = st.ctx->opts;
  st.backoff = st.backoff.count() == 0
                 ? o.backoff_min
                 : std::min(o.backoff_max, st.backoff * 2);
  // Full jitter in [backoff/2, backoff]: thousands of clients that lost the
  // same server do not come back in the same millisecond.
  auto half = st.backoff.count() / 2;
  auto delay = milliseconds(half + (half > 0 ? st.rng() % (half + 1) : 0));
  st.ph = phase::idle;
  self->delayed_send(self, delay, tick_atom::value);
}

/// The connection ended: report why and, unless final, try again.
void lost(client_ptr self, connection_status s, const std::string& reason,
          bool final) {
  auto& st = self->state;
  drop(self);
  set_status(self, s, reason);
  if (final) {
    st.wanted = false;
    st.ph = phase::stopped;
    return;
  }
  retry_later(self);
}

void connect(client_ptr self) {
  auto& st = self->state;
  if (!st.wanted || st.ph == phase::connecting || st.ph == phase::handshake ||
      st.ph == phase::online)
    return;
  st.ph = phase::connecting;
  set_status(self, connection_status::connecting);
  auto gen = ++st.generation;
  auto me = caf::actor_cast<caf::actor>(self);
  st.ctx->connector->connect(
    st.ctx->opts.host, st.ctx->opts.port, st.ctx->opts.call_timeout,
    [me, gen](int fd, status s) {
      if (fd >= 0)
        caf::anon_send(me, connected_atom::value, gen, fd);
      else
        caf::anon_send(me, failed_atom::value, gen, s.message(),
                       static_cast<uint8_t>(s.code()));
    });
}

/// Puts the `send` frame of `m` (its payload moved out: callers pass their
/// own copy).
void send_frame_for(client_ptr self, store::client_message& m) {
  self->state.unanswered.insert(m.mid);
  codec::send s;
  s.mid = m.mid;
  s.peer = m.peer;
  s.group_id = m.group_id;
  s.flags = m.flags;
  s.expiry_s = m.expiry_s;
  s.kind = m.kind;
  s.in_reply_to = m.in_reply_to;
  s.payload = std::move(m.payload);
  put(self, s);
}

void on_login_ok(client_ptr self, const codec::login_ok& ok) {
  auto& st = self->state;
  st.ph = phase::online;
  st.backoff = milliseconds(0);
  st.address = ok.address;
  st.window = ok.window;
  // The server streams from its cursor for this device. What this client
  // stored beyond it (acks lost with a connection, or still waiting) is
  // acked at once: not sent again, and never a window of already stored
  // records that this client would see no reason to ack.
  st.acked_seq = std::min(st.acked_seq, ok.cursor);
  // Where this database's device started (its first login): the records
  // above it are streamed, those below are history for sync(), which then
  // never overlaps what the stream brings (store::history_id sorts synced
  // messages as older than the live ones of their millisecond).
  if (auto start = st.ctx->db->kv_get(sync_start_key); start.ok() && !*start)
    (void)st.ctx->db->kv_put(sync_start_key, std::to_string(ok.cursor + 1));
  st.ctx->set_address(ok.address);
  // Before the status: a listener told "online" may ask tls_resumed().
  st.ctx->resumed.store(st.tls && st.tls->resumed(), std::memory_order_relaxed);
  set_status(self, connection_status::online);
  // The outbox goes out in order; the server answers each (resends are
  // deduplicated by mid on the server).
  if (st.stored_seq > st.acked_seq)
    ack_stored(self); // see above
  if (auto box = st.ctx->db->outbox(); box.ok())
    for (auto& m : *box)
      send_frame_for(self, m);
  if (!st.watching.empty())
    put(self, codec::presence_subscribe{
                true, {st.watching.begin(), st.watching.end()}});
  st.ping_every = seconds(std::max<uint32_t>(1, ok.ping_interval_s));
  self->delayed_send(self, st.ping_every, ping_atom::value, st.generation);
  if (st.tls) {
    // The ticket came right after the handshake, before this answer.
    if (auto t = st.tls->latest_ticket())
      st.ticket = std::move(t);
    // What the handshake grew the memory BIOs to (the server's certificate
    // flight): thousands of clients in one process each keep it otherwise.
    st.tls->release_buffers();
  }
}

void apply_status(client_ptr self, const codec::status_update& su) {
  auto& st = self->state;
  auto mid = su.mid;
  auto value = static_cast<uint8_t>(su.value);
  auto seq = su.seq;
  auto ts = su.ts_ms;
  auto& text = su.text;
  if (value != static_cast<uint8_t>(codec::message_status::outbox))
    st.unanswered.erase(mid);
  if (su.group_id != 0 && (su.receivers > 0 || !su.member.empty())) {
    auto before = st.ctx->db->get(mid);
    if (!before.ok() || !*before)
      return; // not sent from this device (another device's message)
    if (su.receivers > 0 && su.value == codec::message_status::sent)
      st.ctx->db->set_receivers(mid, su.receivers);
    if (!su.member.empty()) {
      // A member's receipt: told as such; the message's own status is the
      // summary: DELIVERED (READ) once every member it went to is.
      auto counts = st.ctx->db->member_status(mid, su.member, value, ts);
      if (!counts.ok())
        return;
      auto pub = to_public(std::move(**before));
      auto member = su.member;
      auto ms = static_cast<message_status>(value);
      st.ctx->emit([pub = std::move(pub), member, ms](listener& l) {
        l.on_member_status(pub, member, ms);
      });
      auto& c = *counts;
      if (c.receivers == 0) {
        // Unknown (SENT came from the log after a reconnect): the first
        // member's receipt moves the summary, as before per-member counts.
      } else if (c.read == c.receivers) {
        value = static_cast<uint8_t>(codec::message_status::read);
      } else if (c.delivered == c.receivers) {
        value = static_cast<uint8_t>(codec::message_status::delivered);
      } else {
        value = static_cast<uint8_t>(codec::message_status::sent);
      }
    }
  }
  // not_found when it was not sent from this device (another device's
  // message): nothing to tell.
  uint8_t old = 0;
  auto after = st.ctx->db->set_status(mid, value, seq, ts, &old);
  if (!after.ok() || after->status == old)
    return;
  auto pub = to_public(std::move(*after));
  st.ctx->emit([pub = std::move(pub), text](listener& l) {
    l.on_message_status(pub, text);
  });
}

/// Stores an incoming record; false when the database refused it (then it
/// must not be acknowledged: the server sends it again after a reconnect).
bool on_message(client_ptr self, codec::message& m) {
  auto& st = self->state;
  auto cm = from_wire(m);
  auto fresh = st.ctx->db->add_incoming(cm);
  if (!fresh.ok())
    return false;
  if (*fresh) {
    auto pub = to_public(std::move(cm)); // the store holds its own copy
    st.ctx->emit([pub = std::move(pub)](listener& l) {
      l.on_message(pub, message_origin::realtime);
    });
  }
  return true;
}

/// An update record (edit, retraction) of a message this device may hold;
/// false when the database refused the change (then it is not acked).
bool on_update(client_ptr self, const codec::update& u) {
  auto& st = self->state;
  auto id = st.ctx->db->find(u.sender, u.mid);
  if (!id)
    return false;
  uint64_t target = *id;
  if (target == 0 && u.sender == st.address) {
    // Sent from this device: stored under its mid (its sender may have been
    // unknown then, before the first login).
    auto own = st.ctx->db->get(u.mid);
    if (own.ok() && *own && (*own)->outgoing && (*own)->id == u.mid)
      target = u.mid;
  }
  if (target == 0)
    return true; // not held here (never synced, or removed): nothing to do
  return apply_change(*st.ctx, target, u.kind, u.payload).ok();
}

void on_frame(client_ptr self) {
  auto& st = self->state;
  std::visit(
    [&](auto& f) {
      using T = std::decay_t<decltype(f)>;
      if constexpr (std::is_same_v<T, codec::login_ok>) {
        on_login_ok(self, f);
      } else if constexpr (std::is_same_v<T, codec::login_failed>) {
        using lr = codec::login_failure_reason;
        bool transient =
          f.reason == lr::unavailable || f.reason == lr::rate_limited;
        lost(self,
             transient ? connection_status::offline
                       : connection_status::authfail,
             f.text, !transient);
      } else if constexpr (std::is_same_v<T, codec::message>) {
        auto seq = f.seq;
        if (!on_message(self, f)) {
          lost(self, connection_status::offline,
               "the local database refused a message; reconnecting to "
               "receive it again",
               false);
          return;
        }
        st.stored_seq = std::max(st.stored_seq, seq);
        if (!f.outgoing)
          st.ack_urgent = true; // the sender waits for DELIVERED
      } else if constexpr (std::is_same_v<T, codec::status_update>) {
        apply_status(self, f);
        st.stored_seq = std::max(st.stored_seq, f.seq);
      } else if constexpr (std::is_same_v<T, codec::group_event>) {
        // A log record: told to the listeners once (a record the device
        // stored already comes again only after a lost ack), then acked.
        if (f.seq > st.stored_seq) {
          group_event ev;
          ev.group_id = f.group_id;
          ev.kind = static_cast<group_event_kind>(f.kind);
          ev.actor = f.actor;
          ev.name = f.name;
          ev.flags = f.flags;
          ev.ts_ms = f.ts_ms;
          for (auto& m : f.members)
            ev.members.push_back(group_member{m.address, m.flags});
          st.ctx->emit([ev](listener& l) { l.on_group_event(ev); });
        }
        st.stored_seq = std::max(st.stored_seq, f.seq);
      } else if constexpr (std::is_same_v<T, codec::group_info> ||
                           std::is_same_v<T, codec::group_list_page> ||
                           std::is_same_v<T, codec::sync_page> ||
                           std::is_same_v<T, codec::reply>) {
        if (auto i = st.requests.find(f.req); i != st.requests.end()) {
          i->second->set_value(request_result{{}, f});
          st.requests.erase(i);
        }
      } else if constexpr (std::is_same_v<T, codec::update>) {
        if (!on_update(self, f)) {
          lost(self, connection_status::offline,
               "the local database refused a change; reconnecting to "
               "receive it again",
               false);
          return;
        }
        st.stored_seq = std::max(st.stored_seq, f.seq);
      } else if constexpr (std::is_same_v<T, codec::presence>) {
        presence p{f.peer, f.group_id, static_cast<presence_kind>(f.kind),
                   f.ts_ms};
        st.ctx->emit([p](listener& l) { l.on_presence(p); });
      } else if constexpr (std::is_same_v<T, codec::ping>) {
        put(self, codec::pong{f.nonce});
      } else if constexpr (std::is_same_v<T, codec::goodbye>) {
        using gr = codec::goodbye_reason;
        switch (f.reason) {
        case gr::signout:
          lost(self, connection_status::signout, f.text, true);
          break;
        case gr::auth_revoked:
        case gr::deleted:
          lost(self, connection_status::authfail, f.text, true);
          break;
        case gr::shutdown:
          lost(self, connection_status::shutdown, f.text, false);
          break;
        default:
          lost(self, connection_status::offline, f.text, false);
        }
      } else {
        // pong, server_error, and frames of families not served yet
      }
    },
    st.frame);
}

void on_data(client_ptr self, const uint8_t* data, size_t size) {
  auto& st = self->state;
  if (!st.tls)
    return;
  // Decrypted bytes are handled at once: one buffer per worker thread, not
  // 16 KiB kept by each of 10,000 clients.
  thread_local tls::bytes plain;
  plain.clear();
  auto s = st.tls->receive(data, size, plain, st.cipher);
  // A TLS failure (not the server's close_notify after its goodbye) makes
  // the next handshake a full one; decided before any frame below can drop
  // the connection.
  if (!s && s.code() != status_code::unavailable)
    st.ticket.reset();
  auto gen = st.generation;
  if (!plain.empty()) {
    auto e = st.parser.feed(
      plain.data(), plain.size(),
      [&](codec::frame_type t, const uint8_t* body, size_t len) {
        if (codec::decode(t, body, len, st.frame) != codec::errc::ok)
          return false;
        on_frame(self);
        return st.generation == gen; // stop once the connection was dropped
      });
    if (e != codec::errc::ok && st.generation == gen) {
      lost(self, connection_status::offline,
           "the server sent a malformed frame", false);
      return;
    }
  }
  if (st.generation != gen)
    return;
  if (!s) {
    bool trust = s.code() == status_code::unauthenticated;
    lost(self,
         trust ? connection_status::connect_failure
               : connection_status::offline,
         s.message(), false);
    return;
  }
  // Everything stored is acknowledged cumulatively: now when a record needs
  // it or half the server's window waits, else with the next frame this
  // client sends (a send, a request, at the latest the ping). No timer: a
  // timer per client costs the runtime's clock thread a wake-up each. What
  // a late ack risks is records sent again after a lost connection, which
  // are stored already and told to nobody twice.
  if (st.stored_seq > st.acked_seq && st.ph == phase::online &&
      (st.ack_urgent || st.stored_seq - st.acked_seq >= st.window / 2))
    ack_stored(self);
  // The local cursor moves at once, whatever the ack waits for: after a
  // crash the next start knows what it stored (group events, which are
  // told by seq, are not told twice).
  if (st.stored_seq > st.db_cursor) {
    st.ctx->db->set_cursor(st.stored_seq);
    st.db_cursor = st.stored_seq;
  }
  schedule_flush(self);
}

/// The poller saw the socket readable and/or writable.
void on_io(client_ptr self) {
  auto& st = self->state;
  if (!st.ch)
    return;
  auto ev = st.ch->take_events();
  if ((ev & net::io_event::writable) != 0)
    st.ch->flush();
  if ((ev & net::io_event::readable) == 0)
    return;
  auto gen = st.generation;
  for (;;) {
    // One read buffer per worker thread, not per client (10,000 clients).
    thread_local std::array<uint8_t, 64 * 1024> rx;
    size_t n = 0;
    auto r = st.ch->read_some(rx.data(), rx.size(), n);
    if (n > 0)
      on_data(self, rx.data(), n);
    if (st.generation != gen || !st.ch)
      return; // dropped while handling the data
    if (r == net::channel::read_result::data)
      continue;
    if (r != net::channel::read_result::drained)
      lost(self, connection_status::offline,
           "the connection to the server was lost", false);
    return;
  }
}

} // namespace

caf::actor make_client_actor(caf::actor_system& sys,
                             std::shared_ptr<client_context> ctx) {
  auto fn = [](client_ptr self,
               std::shared_ptr<client_context> c) -> caf::behavior {
    self->state.ctx = std::move(c);
    if (auto cur = self->state.ctx->db->cursor(); cur.ok())
      self->state.stored_seq = self->state.acked_seq = self->state.db_cursor =
        *cur;
    return {
      [=](start_atom, reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        st.wanted = true;
        if (st.ph == phase::stopped)
          st.ph = phase::idle;
        connect(self);
        slot->set_value({});
      },
      [=](reconnect_atom, reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        if (!st.wanted) {
          slot->set_value({0, "the client is not started: call start()",
                           status_code::failed_precondition});
          return;
        }
        // As a lost network would: no goodbye, no close_notify.
        if (st.ph != phase::idle)
          drop(self);
        st.backoff = milliseconds(0);
        st.ph = phase::idle;
        set_status(self, connection_status::offline,
                   "reconnect() dropped the connection");
        connect(self);
        slot->set_value({});
      },
      [=](stop_atom, reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        st.wanted = false;
        if (st.ph == phase::online) {
          if (st.stored_seq > st.acked_seq)
            ack_stored(self); // before the goodbye: the server stops reading
          put(self, codec::goodbye{codec::goodbye_reason::normal, "stop"});
          flush_out(self);
        }
        drop(self);
        st.ph = phase::stopped;
        set_status(self, connection_status::stopped);
        slot->set_value({});
      },
      [=](send_atom, store::client_message& m) {
        turn t{self};
        // Stored by the facade. Sent unless offline (the login sends the
        // outbox), sent already on this connection (the login's replay got
        // it), or answered already.
        auto& st = self->state;
        if (st.ph != phase::online || st.unanswered.count(m.mid) != 0)
          return;
        auto now = st.ctx->db->status_of(m.mid);
        if (!now.ok() || !*now ||
            **now != static_cast<uint8_t>(codec::message_status::outbox))
          return;
        send_frame_for(self, m);
        schedule_flush(self);
      },
      [=](flush_atom) {
        self->state.flush_pending = false;
        self->state.flush_wanted = false;
        flush_out(self);
      },
      [=](request_atom, server_request& r) {
        turn t{self};
        auto& st = self->state;
        if (st.ph != phase::online) {
          r.slot->set_value(request_result{
            status{status_code::unavailable,
                   "the client is not online: start() it and wait for "
                   "ONLINE, then try again"},
            {}});
          return;
        }
        auto req = ++st.next_req;
        std::visit(
          [&](auto& f) {
            if constexpr (has_req<std::decay_t<decltype(f)>>::value)
              f.req = req;
          },
          r.frame);
        std::visit([&](auto& f) { put(self, f); }, r.frame);
        st.requests.emplace(req, std::move(r.slot));
        schedule_flush(self);
      },
      [=](presence_atom, std::string& peer, uint32_t group_id, uint8_t kind,
          reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        if (st.ph != phase::online) {
          slot->set_value({0,
                           "the client is not online: presence is never "
                           "queued, send it when ONLINE",
                           status_code::unavailable});
          return;
        }
        put(self, codec::presence{std::move(peer), group_id,
                                  static_cast<codec::presence_kind>(kind), 0});
        schedule_flush(self);
        slot->set_value({});
      },
      [=](subscribe_atom, bool on, std::vector<std::string>& users,
          reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        std::vector<std::string> changed;
        for (auto& u : users)
          if (on ? st.watching.insert(u).second : st.watching.erase(u) > 0)
            changed.push_back(u);
        if (on && st.watching.size() > 1000) {
          for (auto& u : changed)
            st.watching.erase(u);
          slot->set_value({0,
                           "at most 1000 users can be watched: unsubscribe "
                           "from some first",
                           status_code::resource_exhausted});
          return;
        }
        if (st.ph == phase::online && !changed.empty()) {
          put(self, codec::presence_subscribe{on, std::move(changed)});
          schedule_flush(self);
        }
        slot->set_value({});
      },
      [=](resend_atom, uint64_t id, reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        auto m = st.ctx->db->requeue(id);
        if (!m.ok()) {
          slot->set_value({0, m.error().message(), m.error().code()});
          return;
        }
        if (st.ph == phase::online) {
          send_frame_for(self, *m);
          flush_out(self);
        }
        slot->set_value({id, {}});
      },
      [=](remove_atom, uint64_t id, reply_slot& slot) {
        turn t{self};
        auto s = self->state.ctx->db->remove(id);
        slot->set_value({id, s ? std::string{} : s.to_string()});
      },
      [=](mark_atom, std::string& peer, uint32_t group_id, uint64_t up_to,
          reply_slot& slot) {
        turn t{self};
        auto& st = self->state;
        auto seq = st.ctx->db->mark_read(peer, group_id, up_to);
        if (!seq) {
          slot->set_value({0, seq.error().to_string()});
          return;
        }
        if (*seq > 0 && st.ph == phase::online) {
          put(self, codec::read{peer, group_id, *seq});
          flush_out(self);
        }
        slot->set_value({*seq, {}});
      },
      [=](connected_atom, uint64_t gen, int fd) {
        turn t{self};
        auto& st = self->state;
        if (gen != st.generation || st.ph != phase::connecting) {
          ::close(fd);
          return;
        }
        st.ph = phase::handshake;
        st.parser = codec::frame_parser{codec::max_frame_body_protocol};
        auto me = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
        auto ch = net::channel::open(*st.ctx->poller, fd, [me] {
          if (auto a = caf::actor_cast<caf::actor>(me))
            caf::anon_send(a, io_atom::value);
        });
        if (!ch) {
          lost(self, connection_status::connect_failure, ch.error().message(),
               false);
          return;
        }
        st.ch = std::move(*ch);
        st.tls = std::make_unique<tls::stream>(st.ctx->tls, st.ctx->opts.host);
        if (st.ctx->opts.tls_resume)
          st.tls->resume(st.ticket);
        st.tls->start(st.cipher);
        put(self, codec::hello{codec::protocol_version, st.ctx->opts.app_id,
                               st.ctx->opts.token, st.ctx->device,
                               "libparley " PARLEY_VERSION, 0});
        flush_out(self); // the hello waits in TLS until the handshake ends
      },
      [=](failed_atom, uint64_t gen, std::string& reason, uint8_t) {
        turn t{self};
        auto& st = self->state;
        if (gen != st.generation)
          return;
        lost(self, connection_status::connect_failure, reason, false);
      },
      [=](io_atom) {
        turn t{self}; on_io(self); },
      [=](tick_atom) {
        turn t{self}; connect(self); },
      [=](ping_atom, uint64_t gen) {
        turn t{self};
        auto& st = self->state;
        if (gen != st.generation || st.ph != phase::online)
          return;
        put(self, codec::ping{gen});
        flush_out(self);
        if (st.tls)
          st.tls->release_buffers(); // a burst's, on a quiet connection
        self->delayed_send(self, st.ping_every, ping_atom::value, gen);
      },
    };
  };
  return sys.spawn(fn, std::move(ctx));
}

} // namespace parley::cli
