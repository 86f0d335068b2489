#include "actors/server/session.hpp"

#include "actors/common/channel.hpp"
#include "actors/common/tsan.hpp"
#include "actors/server/context.hpp"
#include "codec/codec.hpp"

#include <caf/all.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace parley::srv {

namespace {

using namespace std::chrono;

enum class phase { handshake, user, admin, closing };

/// Appends of one session waiting for the store before it stops reading.
constexpr uint32_t max_appends_in_flight = 64;

/// Bytes queued for a connection beyond which its client counts as gone:
/// log streaming stops at max_write_buffer, this bounds everything else.
constexpr uint64_t hard_write_limit_factor = 4;

struct session_state {
  std::shared_ptr<context> ctx;
  std::unique_ptr<net::channel> ch; ///< The socket (null once closed).
  bool read_paused = false;      ///< Too many appends in flight: not reading.
  bool resume_queued = false;    ///< A resume_atom is in the mailbox.
  bool flush_queued = false;     ///< A flush_atom is in the mailbox.
  bool flush_wanted = false;     ///< Output waits for the end of the turn.
  bool trim_after_flush = false; ///< Login done: give the handshake's
                                 ///< buffers back after the next flush.
  std::string peer_addr;
  std::string host; ///< The peer's IP address (login failures count per host).
  std::unique_ptr<tls::stream> tls;
  codec::frame_parser parser;
  phase ph = phase::handshake;
  // identity, after login
  uint64_t uid = 0;
  std::string app;
  std::string address;
  std::string device;
  std::string token_id;
  // delivery state: the log is streamed in order from the device's cursor
  uint32_t window = 0;
  uint64_t sent_upto = 0;         ///< Highest seq streamed (or skipped).
  /// The log may hold records after sent_upto only when sent_upto < this:
  /// raised by every append this session is told of (with its head), set
  /// to sent_upto when a read found nothing more. An ack then reads the
  /// store only when there is something to stream.
  uint64_t maybe_head = UINT64_MAX;
  uint64_t last_delivered = 0;    ///< Highest seq actually sent.
  uint64_t acked = 0;             ///< Highest seq the device acknowledged.
  uint32_t appends_in_flight = 0; ///< Sends waiting for the store.
  /// Presence sent while messages of this session waited for the store:
  /// released when they are stored, so a typing indicator never overtakes
  /// the message typed before it. (receivers, frame)
  std::vector<std::pair<std::vector<uint64_t>, bytes>> held_presence;
  uint32_t subscriptions = 0; ///< Users whose presence this session watches.
  /// Seqs of this device's own records that the current pump streamed as
  /// compact SENT statuses (answer_append: the answer is then redundant).
  std::vector<uint64_t> own_streamed;
  bool collect_own = false; ///< pump() fills own_streamed.
  // buffers reused across handlers
  codec::buffer out;
  tls::bytes cipher;
  tls::bytes plain;
  codec::frame frame;
  codec::message scratch;
  std::vector<store::log_record> records;
  steady_clock::time_point started = steady_clock::now();
  /// The last complete frame (bytes that never make a frame do not count:
  /// a slowloris peer times out like a silent one).
  steady_clock::time_point last_rx = steady_clock::now();
  steady_clock::time_point rx_now; ///< When the bytes being handled arrived.
  token_bucket frames;             ///< server_options::max_frames_per_s
  static inline const char* name = "parley.session";
};

using session_ptr =
  caf::stateful_actor<session_state, net::hb_actor<caf::event_based_actor>>*;

template<class Frame>
void put(session_ptr self, const Frame& f) {
  codec::encode(f, self->state.out);
}

void unregister(session_ptr self) {
  auto& st = self->state;
  if (st.ph == phase::user)
    self->send(st.ctx->dispatcher, unregister_atom::value, st.uid, st.device,
               caf::actor_cast<caf::actor>(self));
}

void schedule_flush(session_ptr self);
void end_turn(session_ptr self);
void trim(session_ptr self);

/// Calls end_turn when a handler returns (by any path): every handler
/// starts with one.
struct turn {
  session_ptr self;
  ~turn() { end_turn(self); }
};

/// The socket is gone (closed by the peer, failed, or unwritable).
void lost(session_ptr self) {
  auto& st = self->state;
  if (st.ph == phase::closing)
    return;
  unregister(self);
  st.ph = phase::closing;
  st.ch.reset();
  self->quit();
}

/// Encrypts what handlers queued in `out` and writes it to the socket (what
/// the kernel does not take now waits in the channel).
void flush_out(session_ptr self) {
  auto& st = self->state;
  if (!st.out.empty() && st.tls) {
    if (auto s = st.tls->send(st.out.data(), st.out.size(), st.cipher); !s)
      st.ctx->log->debug("session {}: {}", st.peer_addr, s.to_string());
    st.out.clear();
  }
  if (st.cipher.empty() || !st.ch)
    return;
  bool ok = st.ch->write(st.cipher.data(), st.cipher.size());
  st.cipher.clear();
  if (!ok) {
    lost(self);
    return;
  }
  if (st.ch->pending() >
        hard_write_limit_factor * st.ctx->opts.max_write_buffer &&
      st.ph != phase::closing) {
    st.ctx->log->info("session {}: the client does not read ({} bytes "
                      "queued): closing",
                      st.peer_addr, st.ch->pending());
    lost(self);
  }
}

/// Ends the session: optional goodbye, flush, close the socket, quit.
void close(session_ptr self, std::optional<codec::goodbye> bye) {
  auto& st = self->state;
  if (st.ph == phase::closing)
    return;
  if (bye && st.tls && st.tls->established())
    put(self, *bye);
  flush_out(self); // encrypt what is queued before the close_notify
  if (st.tls && st.tls->established()) {
    st.tls->shutdown(st.cipher);
    flush_out(self);
  }
  lost(self);
}

void protocol_error(session_ptr self, std::string text) {
  self->state.ctx->log->info("session {}: protocol error: {}",
                             self->state.peer_addr, text);
  close(self,
        codec::goodbye{codec::goodbye_reason::protocol_error, std::move(text)});
}

/// Failures that mean the peer does not know a valid credential: they count
/// against its host (a valid but expired token does not).
bool is_guess(codec::login_failure_reason r) {
  using lr = codec::login_failure_reason;
  return r == lr::unknown_token || r == lr::other_app || r == lr::unknown_app ||
         r == lr::bad_admin_key;
}

void login_failed(session_ptr self, codec::login_failure_reason reason,
                  std::string text) {
  auto& st = self->state;
  if (is_guess(reason))
    st.ctx->logins->failed(st.host, steady_clock::now());
  st.ctx->log->info("session {}: login failed ({}): {}", st.peer_addr,
                    codec::to_string(reason), text);
  put(self, codec::login_failed{reason, std::move(text)});
  close(self, std::nullopt);
}

std::string explain(codec::login_failure_reason r, const std::string& app) {
  using lr = codec::login_failure_reason;
  switch (r) {
  case lr::unknown_token:
    return "the access token is not known to app '" + app +
           "': pass the user's access token (from 'parley admin user "
           "add'), not the app id or the admin key";
  case lr::other_app:
    return "this access token was issued for another app, not '" + app +
           "': pass the app id the token belongs to";
  case lr::expired:
    return "the access token expired: ask your backend for a new one "
           "('parley admin token add')";
  case lr::revoked:
    return "the access token was revoked: ask your backend for a new one";
  case lr::user_disabled:
    return "the user is disabled on this server: ask its administrator";
  case lr::unknown_app:
    return "there is no app '" + app +
           "' on this server: check the app id ('parley admin app "
           "add' creates one)";
  default:
    return std::string{codec::to_string(r)};
  }
}

// -- streaming the log
// ---------------------------------------------------------------

/// Puts `records` (in seq order, the first right after sent_upto) on the
/// wire. Expired records are skipped; an outgoing record this very device
/// sent becomes a compact SENT status (it has the message already).
void stream(session_ptr self, const std::vector<store::log_record>& records,
            uint64_t delivered_upto) {
  auto& st = self->state;
  auto now = self->state.ctx->now();
  std::vector<uint64_t> expired;
  for (auto& r : records) {
    st.sent_upto = r.seq;
    // Expired and acknowledged by no device: never delivered. (Another
    // device got it in time: this one gets it too.)
    if (r.expired ||
        (r.expires_ms != 0 && r.expires_ms < now && r.seq > delivered_upto)) {
      if (r.type == codec::frame_type::message && r.origin_device.empty())
        expired.push_back(r.seq);
      continue;
    }
    if (r.type == codec::frame_type::message && !r.origin_device.empty() &&
        r.origin_device == st.device) {
      auto& m = st.scratch;
      if (codec::decode_body(reinterpret_cast<const uint8_t*>(r.frame.data()) +
                               codec::header_size,
                             r.frame.size() - codec::header_size,
                             m) == codec::errc::ok) {
        put(self, codec::status_update{r.seq,
                                       m.mid,
                                       m.peer,
                                       m.group_id,
                                       {},
                                       codec::message_status::sent,
                                       m.ts_ms,
                                       {},
                                       0});
        st.last_delivered = r.seq;
        if (st.collect_own)
          st.own_streamed.push_back(r.seq);
      }
      continue;
    }
    st.out.insert(st.out.end(), r.frame.begin(), r.frame.end());
    st.last_delivered = r.seq;
  }
  if (!expired.empty())
    self->send(st.ctx->storage, expire_atom::value, st.uid,
               std::move(expired));
  // Records skipped at the tail need no storing by the device: once it
  // acknowledged everything it was sent, the cursor moves past them.
  if (st.acked == st.last_delivered && st.sent_upto > st.acked) {
    st.acked = st.sent_upto;
    self->send(st.ctx->storage, ack_atom::value, st.uid, st.device, st.acked);
  }
  schedule_flush(self);
}

/// Records sent and not acknowledged: the window's measure. Records
/// skipped (expired) after the last one sent do not count: the device
/// never sees them, so it cannot be asked to ack them (a client that acks
/// status records lazily, at half the window, would otherwise wait with
/// the server for the next frame it sends).
uint64_t in_flight(const session_state& st) {
  return st.last_delivered > st.acked ? st.last_delivered - st.acked : 0;
}

/// True when streaming may go on: logged in, the window and the write
/// buffer have room.
bool may_stream(session_ptr self) {
  auto& st = self->state;
  return st.ph == phase::user && st.ch &&
         st.ch->pending() < st.ctx->opts.max_write_buffer &&
         in_flight(st) < st.window;
}

/// Output a turn may encode before it is written out: the write buffer
/// counts only what the kernel refused, so a pump that read the whole
/// window in one turn would hold all of it here (16 MB for a window of
/// 4096 records of 4 KB) before the first write.
size_t unflushed_limit(session_ptr self) {
  return std::max<size_t>(self->state.ctx->opts.max_write_buffer / 4,
                          64 * 1024);
}

/// Streams log records after sent_upto, read from the store, while the
/// window and the write buffer allow.
void pump(session_ptr self) {
  auto& st = self->state;
  // Up to maybe_head, not one read further: a read that would find
  // nothing after it costs a read txn (a fifth of a read per message in
  // the 1,000-user chat), and whatever is appended later comes with its
  // own (log) news.
  while (st.sent_upto < st.maybe_head && may_stream(self)) {
    size_t n = std::min<uint64_t>(st.window - in_flight(st), 256);
    st.records.clear();
    uint64_t delivered_upto = 0;
    if (auto s =
          st.ctx->store->read_log(st.uid, st.sent_upto, n, 256 * 1024,
                                  st.records, &delivered_upto, st.ctx->now());
        !s) {
      st.ctx->log->error("session {}: reading the log of uid {}: {}",
                         st.peer_addr, st.uid, s.to_string());
      break;
    }
    if (st.records.empty()) {
      // Nothing after sent_upto in this snapshot: a later append comes
      // with its own (log) news, which raises maybe_head again.
      st.maybe_head = st.sent_upto;
      break;
    }
    stream(self, st.records, delivered_upto);
    // Written out as it grows: what the kernel refuses then counts in the
    // write buffer, and may_stream stops (a writable socket resumes it).
    if (st.out.size() >= unflushed_limit(self))
      flush_out(self);
  }
}

/// True when `batch` is what the store holds: no edit or retraction
/// rewrote records since it was made, and none of its records expired (an
/// expired record's fate depends on what the user's devices acked, which
/// the store knows).
bool fresh(session_ptr self, const appended_batch& batch) {
  auto& st = self->state;
  if (batch.rewrites != st.ctx->rewrites.load(std::memory_order_acquire))
    return false;
  auto now = st.ctx->now();
  for (auto& r : batch.records)
    if (r.expires_ms != 0 && r.expires_ms < now)
      return false;
  return true;
}

/// True when `batch` can be encoded in this turn within unflushed_limit.
bool fits_unflushed(session_ptr self, const appended_batch& batch) {
  size_t bytes = self->state.out.size();
  for (auto& r : batch.records)
    bytes += r.frame.size();
  return bytes <= unflushed_limit(self);
}

/// The store appended `batch` to this user's log (up to `head`): streamed
/// as it is when it continues what this session streamed and fits the
/// window; otherwise (a gap, a full window, records that may have expired)
/// read from the store.
void offer(session_ptr self, uint64_t head, const record_batch& batch) {
  auto& st = self->state;
  st.maybe_head = std::max(st.maybe_head, head);
  if (head <= st.sent_upto)
    return; // streamed already
  if (batch && !batch->records.empty() && fresh(self, *batch) &&
      batch->records.front().seq == st.sent_upto + 1 &&
      batch->records.back().seq == head && may_stream(self) &&
      in_flight(st) + batch->records.size() <= st.window &&
      fits_unflushed(self, *batch)) {
    stream(self, batch->records, 0); // fresh: delivered_upto plays no role
    return;
  }
  pump(self); // in pieces, within the write buffer
}

// -- frames of a logged-in user
// -----------------------------------------------------

void status_now(session_ptr self, const codec::send& s,
                codec::message_status value, std::string text) {
  put(self, codec::status_update{0,
                                 s.mid,
                                 s.peer,
                                 s.group_id,
                                 {},
                                 value,
                                 self->state.ctx->now(),
                                 std::move(text),
                                 0});
}

void resume_reading(session_ptr self);

/// The store answered an append: SENT (or why not) to the client, and the
/// socket is read again once the session is below its limit of appends in
/// flight.
void answer_append(session_ptr self, uint64_t mid, const std::string& peer,
                   uint32_t group_id, codec::message_status value, uint64_t ts,
                   const std::string& text, uint32_t receivers = 0,
                   uint64_t sender_seq = 0, bool duplicate = false,
                   const record_batch& records = nullptr) {
  auto& st = self->state;
  --st.appends_in_flight;
  if (st.ph == phase::closing)
    return;
  if (st.appends_in_flight == 0 && !st.held_presence.empty()) {
    for (auto& [uids, frame] : st.held_presence)
      self->send(st.ctx->dispatcher, realtime_atom::value, std::move(uids),
                 std::move(frame));
    st.held_presence.clear();
  }
  // The batch is durable, so the log holds this message's own record and
  // whatever else the batch appended for this user: stream it now, in the
  // same write as the answer, rather than after the dispatcher's (log).
  // When the own record went out (as the compact SENT status, with its
  // seq) the answer would say the same again: it is left out.
  bool told = false;
  if (value == codec::message_status::sent && sender_seq != 0 && !duplicate &&
      group_id == 0 && st.ph == phase::user) {
    st.own_streamed.clear();
    st.collect_own = true;
    if (records && !records->records.empty()) {
      offer(self, records->records.back().seq, records);
    } else {
      st.maybe_head = std::max(st.maybe_head, sender_seq);
      pump(self);
    }
    st.collect_own = false;
    told = std::find(st.own_streamed.begin(), st.own_streamed.end(),
                     sender_seq) != st.own_streamed.end();
  }
  if (!told)
    put(self, codec::status_update{0,     mid, peer, group_id, {},
                                   value, ts,  text, receivers});
  schedule_flush(self);
  resume_reading(self);
}

void on_send(session_ptr self, codec::send& s, const uint8_t* body,
             size_t len) {
  auto& st = self->state;
  if (s.group_id != 0 && s.expiry_s == 0) {
    status_now(self, s, codec::message_status::fail,
               "real-time (expiry 0) group messages are not served yet: send "
               "it with an expiry");
    return;
  }
  if (s.group_id == 0 && s.peer.empty()) {
    status_now(self, s, codec::message_status::invalid_dest,
               "a message needs a peer address or a group id");
    return;
  }
  if (st.ctx->hooks) {
    message_event ev{st.app, st.address, s.peer,    s.group_id,
                     s.mid,  s.kind,     &s.payload};
    auto v = st.ctx->hooks->on_message(ev);
    if (!v.accept) {
      status_now(self, s, codec::message_status::rejected,
                 v.reason.empty() ? "refused by the server's message hook"
                                  : v.reason);
      return;
    }
  }
  if (s.expiry_s == 0) {
    // Real-time only: never stored; delivered now or USEROFFLINE.
    auto ruid = st.ctx->store->uid_of(st.app, s.peer);
    if (ruid == 0) {
      status_now(self, s, codec::message_status::invalid_dest,
                 "there is no user '" + s.peer + "' in app '" + st.app + "'");
      return;
    }
    codec::message m;
    m.ts_ms = self->state.ctx->now();
    m.sender = st.address;
    m.peer = st.address;
    m.mid = s.mid;
    m.flags = s.flags;
    m.kind = s.kind;
    m.in_reply_to = s.in_reply_to;
    m.payload = s.payload;
    m.file = s.file;
    codec::buffer frame;
    codec::encode(m, frame);
    auto mid = s.mid;
    auto peer = s.peer;
    self
      ->request(st.ctx->dispatcher, caf::infinite, realtime_atom::value, ruid,
                std::move(frame))
      .then(
        [=](uint32_t reached) {
          turn t{self};
          auto value = reached > 0 ? codec::message_status::sent
                                   : codec::message_status::user_offline;
          put(self, codec::status_update{
                      0,
                      mid,
                      peer,
                      0,
                      {},
                      value,
                      self->state.ctx->now(),
                      reached > 0 ? std::string{}
                                  : "'" + peer +
                                      "' has no device online and the "
                                      "message had expiry 0 (real-time "
                                      "only): send it with an expiry to "
                                      "store it",
                      0});
          schedule_flush(self);
        },
        [=](caf::error& err) {
          turn t{self};
          put(self, codec::status_update{
                      0,
                      mid,
                      peer,
                      0,
                      {},
                      codec::message_status::fail,
                      self->state.ctx->now(),
                      "the server could not route the message (" +
                        self->system().render(err) + "): send it again",
                      0});
          schedule_flush(self);
        });
    return;
  }
  append_request req;
  req.sender_uid = st.uid;
  req.app_id = st.app;
  req.sender = st.address;
  req.device = st.device;
  req.send_body.assign(body, body + len);
  auto mid = s.mid;
  auto peer = s.peer;
  auto gid = s.group_id;
  ++st.appends_in_flight;
  self
    ->request(st.ctx->storage, caf::infinite, append_atom::value,
              std::move(req))
    .then(
      [=](const append_reply& rep) {
        turn t{self};
        answer_append(self, mid, peer, gid,
                      static_cast<codec::message_status>(rep.status), rep.ts_ms,
                      rep.text, rep.receivers, rep.sender_seq, rep.duplicate,
                      rep.records);
      },
      [=](caf::error& err) {
        turn t{self};
        answer_append(self, mid, peer, gid, codec::message_status::fail,
                      self->state.ctx->now(),
                      "the server's storage failed (" +
                        self->system().render(err) + "): send it again");
      });
}

void on_ack(session_ptr self, uint64_t seq) {
  auto& st = self->state;
  if (seq > st.sent_upto) {
    // The device says it stored more than this session sent: an ack of an
    // earlier session that had not reached the store when this one began.
    // Believe it up to the head of the log, and do not send those again.
    auto head = st.ctx->store->head(st.uid);
    st.maybe_head = std::max(st.maybe_head, head);
    if (seq > head) {
      put(self, codec::server_error{status_code::invalid_argument, seq,
                                    "ack beyond the end of your log (" +
                                      std::to_string(head) + ")"});
      return;
    }
    st.sent_upto = seq;
    st.last_delivered = seq;
  }
  if (seq <= st.acked)
    return;
  st.acked = seq;
  if (st.acked == st.last_delivered)
    st.acked = st.sent_upto; // skipped records at the tail
  self->send(st.ctx->storage, ack_atom::value, st.uid, st.device, st.acked);
  if (st.sent_upto < st.maybe_head)
    pump(self); // the window has room again for what the log may hold
}

/// A group change, edit or retraction: the storage actor applies it and
/// answers (group_info or reply); events and updates reach the users
/// concerned through their logs.
void on_change(session_ptr self, codec::frame_type t, const uint8_t* body,
               size_t len) {
  auto& st = self->state;
  self
    ->request(st.ctx->storage, caf::infinite, change_atom::value, st.uid,
              st.app, st.address, st.device, static_cast<uint8_t>(t),
              bytes(body, body + len))
    .then(
      [=](bytes& answer) {
        turn t{self};
        auto& s = self->state;
        if (s.ph != phase::user)
          return;
        s.out.insert(s.out.end(), answer.begin(), answer.end());
        schedule_flush(self);
      },
      [=](caf::error& err) {
        turn t{self};
        put(self, codec::server_error{status_code::unavailable, 0,
                                      "the server's storage did not answer (" +
                                        self->system().render(err) + ")"});
        schedule_flush(self);
      });
}

/// group_get and group_list: read from the store at once.
void on_group_read(session_ptr self, const codec::frame& f) {
  auto& st = self->state;
  if (auto* g = std::get_if<codec::group_get>(&f)) {
    auto info = st.ctx->store->group_get(st.uid, g->group_id);
    if (!info) {
      put(self, codec::reply{
                  g->req, info.error().code(), info.error().message(), {}});
      return;
    }
    info->req = g->req;
    put(self, *info);
  } else if (auto* l = std::get_if<codec::group_list>(&f)) {
    auto groups = st.ctx->store->groups_of(st.uid);
    if (!groups) {
      put(self, codec::reply{
                  l->req, groups.error().code(), groups.error().message(), {}});
      return;
    }
    put(self, codec::group_list_page{l->req, std::move(*groups)});
  }
}

/// Most users one session may watch the presence of.
constexpr uint32_t max_subscriptions = 1000;

/// Presence from the user (typing, ...): to the peer's devices or the
/// group's members, never stored. Refusals come back as server_error.
void on_presence(session_ptr self, const codec::presence& p) {
  auto& st = self->state;
  using pk = codec::presence_kind;
  if (p.kind != pk::online && p.kind != pk::typing &&
      p.kind != pk::typing_cleared && p.kind != pk::joined &&
      p.kind != pk::left) {
    put(self, codec::server_error{
                status_code::invalid_argument, 0,
                "presence kind " + std::to_string(int(p.kind)) +
                  " cannot be sent by a user: send online (1), typing (3), "
                  "typing cleared (4), joined (10) or left (11); the server "
                  "sends offline itself"});
    return;
  }
  std::vector<uint64_t> to;
  if (p.group_id != 0) {
    auto r = st.ctx->store->group_receivers(st.uid, p.group_id);
    if (!r) {
      put(self, codec::server_error{r.error().code(), 0, r.error().message()});
      return;
    }
    to = std::move(*r);
  } else {
    auto ruid = st.ctx->store->uid_of(st.app, p.peer);
    if (ruid == 0 || ruid == st.uid) {
      put(self, codec::server_error{
                  status_code::not_found, 0,
                  ruid == 0 ? "presence to '" + p.peer + "': there is no "
                                "such user in app '" + st.app + "'"
                            : std::string{"presence to yourself is not sent"}});
      return;
    }
    to.push_back(ruid);
  }
  if (to.empty())
    return;
  codec::buffer frame;
  codec::encode(codec::presence{st.address, p.group_id, p.kind,
                                self->state.ctx->now()},
                frame);
  if (st.appends_in_flight > 0) {
    if (st.held_presence.size() < 256) // else dropped: presence is a hint
      st.held_presence.emplace_back(std::move(to), std::move(frame));
    return;
  }
  self->send(st.ctx->dispatcher, realtime_atom::value, std::move(to),
             std::move(frame));
}

/// (Un)subscribes to the online/offline presence of users of this app.
void on_subscribe(session_ptr self, const codec::presence_subscribe& s) {
  auto& st = self->state;
  std::vector<uint64_t> uids;
  std::vector<std::string> addresses;
  std::string unknown;
  for (auto& a : s.peers) {
    auto uid = st.ctx->store->uid_of(st.app, a);
    if (uid == 0) {
      unknown += (unknown.empty() ? "'" : ", '") + a + "'";
      continue;
    }
    uids.push_back(uid);
    addresses.push_back(a);
  }
  if (!unknown.empty())
    put(self, codec::server_error{status_code::not_found, 0,
                                  "presence subscription: no user " + unknown +
                                    " in app '" + st.app + "'"});
  if (s.subscribe) {
    if (st.subscriptions + uids.size() > max_subscriptions) {
      put(self, codec::server_error{
                  status_code::resource_exhausted, 0,
                  "a session watches the presence of at most " +
                    std::to_string(max_subscriptions) +
                    " users: unsubscribe from some first"});
      return;
    }
    st.subscriptions += static_cast<uint32_t>(uids.size());
  } else {
    st.subscriptions -= std::min<uint32_t>(st.subscriptions, uids.size());
  }
  if (!uids.empty())
    self->send(st.ctx->dispatcher, subscribe_atom::value, s.subscribe,
               std::move(uids), std::move(addresses),
               caf::actor_cast<caf::actor>(self));
}

/// History sync: one page of a conversation from the user's log, read at
/// once (a read transaction; the storage actor is not involved).
void on_sync(session_ptr self, const codec::sync_request& r) {
  auto& st = self->state;
  constexpr uint32_t default_page = 50, max_page = 500;
  constexpr size_t scan_budget = 20000;
  if (r.group_id == 0 && r.peer.empty()) {
    put(self, codec::reply{r.req, status_code::invalid_argument,
                           "sync needs a peer address or a group id", {}});
    return;
  }
  uint32_t count = r.count == 0 ? default_page : std::min(r.count, max_page);
  codec::sync_page page;
  page.req = r.req;
  size_t max_bytes = st.ctx->opts.max_frame / 2;
  if (auto s = st.ctx->store->read_conversation(st.uid, r.peer, r.group_id,
                                                r.before_seq, count,
                                                scan_budget, max_bytes, page);
      !s) {
    st.ctx->log->error("session {}: history sync of uid {}: {}", st.peer_addr,
                       st.uid, s.to_string());
    put(self, codec::reply{r.req, status_code::unavailable,
                           "the server could not read your history (" +
                             s.message() + "): try again later",
                           {}});
    return;
  }
  put(self, page);
}

void on_user_frame(session_ptr self, const uint8_t* body, size_t len) {
  auto& st = self->state;
  auto rate = st.frames.take(st.rx_now);
  if (rate == token_bucket::verdict::flood) {
    st.ctx->log->warn("session {}: {} keeps sending faster than {} frames/s "
                      "after refusals: closing",
                      st.peer_addr, st.address, st.ctx->opts.max_frames_per_s);
    close(self, codec::goodbye{codec::goodbye_reason::rate_limited,
                               "more than " +
                                 std::to_string(st.ctx->opts.max_frames_per_s) +
                                 " frames/s, also after RATELIMITED answers: "
                                 "slow down before you reconnect"});
    return;
  }
  if (rate == token_bucket::verdict::limited) {
    if (auto* s = std::get_if<codec::send>(&st.frame)) {
      status_now(self, *s, codec::message_status::rate_limited,
                 "you send faster than " +
                   std::to_string(st.ctx->opts.max_frames_per_s) +
                   " frames/s, the server's limit per connection: the "
                   "message was not stored; slow down and send it again");
      return;
    }
    // Acks, pings and reads are cheap and keep delivery going: served.
  }
  std::visit(
    [&](auto& f) {
      using T = std::decay_t<decltype(f)>;
      if constexpr (std::is_same_v<T, codec::send>) {
        on_send(self, f, body, len);
      } else if constexpr (std::is_same_v<T, codec::ack>) {
        on_ack(self, f.seq);
      } else if constexpr (std::is_same_v<T, codec::read>) {
        if (f.group_id == 0 && f.peer.empty())
          return;
        self->send(st.ctx->storage, read_atom::value, st.uid, f.peer,
                   f.group_id,
                   std::min(f.up_to_seq, st.sent_upto));
      } else if constexpr (std::is_same_v<T, codec::group_create> ||
                           std::is_same_v<T, codec::group_members> ||
                           std::is_same_v<T, codec::group_leave> ||
                           std::is_same_v<T, codec::group_delete> ||
                           std::is_same_v<T, codec::group_set> ||
                           std::is_same_v<T, codec::edit> ||
                           std::is_same_v<T, codec::retract>) {
        on_change(self, T::type, body, len);
      } else if constexpr (std::is_same_v<T, codec::group_get> ||
                           std::is_same_v<T, codec::group_list>) {
        on_group_read(self, st.frame);
      } else if constexpr (std::is_same_v<T, codec::sync_request>) {
        on_sync(self, f);
      } else if constexpr (std::is_same_v<T, codec::presence>) {
        on_presence(self, f);
      } else if constexpr (std::is_same_v<T, codec::presence_subscribe>) {
        on_subscribe(self, f);
      } else if constexpr (std::is_same_v<T, codec::ping>) {
        put(self, codec::pong{f.nonce});
      } else if constexpr (std::is_same_v<T, codec::pong>) {
        // nop: any traffic keeps the session alive
      } else if constexpr (std::is_same_v<T, codec::goodbye>) {
        close(self, std::nullopt);
      } else if constexpr (std::is_same_v<T, codec::hello> ||
                           std::is_same_v<T, codec::admin_hello>) {
        protocol_error(self, "already logged in: a second hello");
      } else {
        put(self, codec::server_error{
                    status_code::failed_precondition, 0,
                    std::string{"'"} + std::string{codec::to_string(T::type)} +
                      "' frames are not served by this server version (or "
                      "not to users)"});
      }
    },
    st.frame);
}

// -- login
// ------------------------------------------------------------------------

/// Refuses the login of a host that failed too often of late, before any
/// credential is looked at. Returns true when refused.
bool refuse_guessing_host(session_ptr self) {
  auto& st = self->state;
  auto wait = st.ctx->logins->wait_s(st.host, steady_clock::now());
  if (wait == 0)
    return false;
  st.ctx->log->warn("session {}: login refused: too many failed logins from "
                    "{}",
                    st.peer_addr, st.host);
  put(self, codec::login_failed{
              codec::login_failure_reason::rate_limited,
              "too many failed logins from " + st.host + ": wait " +
                std::to_string(wait) +
                " s, then log in with a valid token (or admin key)"});
  close(self, std::nullopt);
  return true;
}

void on_hello(session_ptr self, codec::hello& h) {
  auto& st = self->state;
  using lr = codec::login_failure_reason;
  if (h.version > codec::protocol_version ||
      h.version < codec::min_protocol_version) {
    login_failed(self, lr::unsupported_version,
                 "this server speaks protocol version " +
                   std::to_string(codec::protocol_version) + ", the client " +
                   std::to_string(h.version) +
                   ": update the client or the server");
    return;
  }
  if (h.device_id.empty()) {
    login_failed(self, lr::missing_device,
                 "the hello carried no device id: the SDK makes one; a "
                 "hand-written client must send a stable id per device");
    return;
  }
  if (st.ctx->stopping) {
    login_failed(self, lr::unavailable,
                 "the server is shutting down: reconnect later");
    return;
  }
  if (refuse_guessing_host(self))
    return;
  auto tc =
    st.ctx->store->check_token(h.app_id, h.token, self->state.ctx->now());
  if (!tc.ok) {
    login_failed(self, tc.reason, explain(tc.reason, h.app_id));
    return;
  }
  if (st.ctx->hooks) {
    auto v =
      st.ctx->hooks->on_login(login_event{h.app_id, tc.address, h.device_id});
    if (!v.accept) {
      login_failed(self, lr::rejected,
                   v.reason.empty() ? "refused by the server's login hook"
                                    : v.reason);
      return;
    }
  }
  st.uid = tc.uid;
  st.app = h.app_id;
  st.address = tc.address;
  st.device = h.device_id;
  st.token_id = tc.token_id;
  st.ph = phase::user;
  if (auto r = st.ctx->opts.max_frames_per_s; r > 0)
    st.frames = token_bucket{double(r), double(r), steady_clock::now()};
  st.window = h.window == 0 ? st.ctx->opts.window
                            : std::min(h.window, st.ctx->opts.window);
  bool known = false;
  st.acked = st.ctx->store->cursor(st.uid, st.device, &known);
  if (!known) // remember where this new device starts
    self->send(st.ctx->storage, ack_atom::value, st.uid, st.device, st.acked);
  st.sent_upto = st.acked;
  st.last_delivered = st.acked;
  self->send(st.ctx->dispatcher, register_atom::value, st.uid, st.device,
             caf::actor_cast<caf::actor>(self));
  codec::login_ok ok;
  ok.address = st.address;
  ok.server_time_ms = self->state.ctx->now();
  ok.head_seq = st.ctx->store->head(st.uid);
  ok.cursor = st.acked;
  ok.max_frame = st.ctx->opts.max_frame;
  ok.ping_interval_s = st.ctx->opts.ping_interval_s;
  ok.window = st.window;
  ok.server = "parleyd " PARLEY_VERSION;
  put(self, ok);
  st.ctx->log->debug("session {}: {}/{} device {} logged in ({} TLS)",
                     st.peer_addr, st.app, st.address, st.device,
                     st.tls && st.tls->resumed() ? "resumed" : "full");
  if (tc.expires_ms != 0) {
    auto now = self->state.ctx->now();
    auto left = tc.expires_ms > now ? tc.expires_ms - now : 0;
    self->delayed_send(self, milliseconds(left), expire_atom::value);
  }
  pump(self);
  st.trim_after_flush = true;
}

void on_admin_hello(session_ptr self, codec::admin_hello& h) {
  auto& st = self->state;
  if (refuse_guessing_host(self))
    return;
  auto& key = st.ctx->admin_key;
  bool match = !key.empty() && h.key.size() == key.size() &&
               CRYPTO_memcmp(h.key.data(), key.data(), key.size()) == 0;
  if (!match) {
    login_failed(self, codec::login_failure_reason::bad_admin_key,
                 "wrong admin key: use the one in the server's data "
                 "directory (admin.key) or PARLEY_ADMIN_KEY");
    return;
  }
  st.ph = phase::admin;
  codec::login_ok ok;
  ok.address = "admin";
  ok.server_time_ms = self->state.ctx->now();
  ok.max_frame = st.ctx->opts.max_frame;
  ok.ping_interval_s = st.ctx->opts.ping_interval_s;
  ok.server = "parleyd " PARLEY_VERSION;
  put(self, ok);
}

void on_admin_frame(session_ptr self, codec::frame_type t, const uint8_t* body,
                    size_t len) {
  auto& st = self->state;
  if (t == codec::frame_type::ping) {
    put(self, codec::pong{std::get<codec::ping>(st.frame).nonce});
    return;
  }
  if (t == codec::frame_type::pong)
    return;
  if (t == codec::frame_type::goodbye) {
    close(self, std::nullopt);
    return;
  }
  if (static_cast<uint8_t>(t) < 0x60 || static_cast<uint8_t>(t) > 0x6f) {
    protocol_error(self, "an admin connection sends admin frames only");
    return;
  }
  self
    ->request(st.ctx->storage, caf::infinite, admin_atom::value,
              static_cast<uint8_t>(t), bytes(body, body + len))
    .then(
      [=](bytes& answer) {
        auto& s = self->state;
        s.out.insert(s.out.end(), answer.begin(), answer.end());
        flush_out(self);
      },
      [=](caf::error& err) {
        put(self, codec::server_error{status_code::unavailable, 0,
                                      "the server's storage did not answer (" +
                                        self->system().render(err) + ")"});
        flush_out(self);
      });
}

// -- bytes in
// ------------------------------------------------------------------------

void on_frame(session_ptr self, codec::frame_type t, const uint8_t* body,
              size_t len) {
  auto& st = self->state;
  if (st.ph == phase::closing)
    return;
  st.last_rx = st.rx_now;
  // The version is read before the rest of a hello: a newer client's hello
  // may have another layout, and deserves unsupported_version, not a
  // protocol error.
  if (st.ph == phase::handshake &&
      (t == codec::frame_type::hello || t == codec::frame_type::admin_hello) &&
      len >= 6) {
    uint32_t magic = uint32_t{body[0]} | (uint32_t{body[1]} << 8) |
                     (uint32_t{body[2]} << 16) | (uint32_t{body[3]} << 24);
    uint16_t version = static_cast<uint16_t>(body[4] | (body[5] << 8));
    if (magic == codec::hello_magic &&
        (version > codec::protocol_version ||
         version < codec::min_protocol_version)) {
      login_failed(self, codec::login_failure_reason::unsupported_version,
                   "this server speaks protocol version " +
                     std::to_string(codec::protocol_version) + ", the client " +
                     std::to_string(version) +
                     ": update the client or the server");
      return;
    }
  }
  if (auto e = codec::decode(t, body, len, st.frame); e != codec::errc::ok) {
    protocol_error(self, codec::to_status(e, codec::to_string(t)).message());
    return;
  }
  switch (st.ph) {
  case phase::handshake:
    if (t == codec::frame_type::hello)
      on_hello(self, std::get<codec::hello>(st.frame));
    else if (t == codec::frame_type::admin_hello)
      on_admin_hello(self, std::get<codec::admin_hello>(st.frame));
    else
      protocol_error(self, "the first frame must be hello or admin_hello");
    break;
  case phase::user:
    on_user_frame(self, body, len);
    break;
  case phase::admin:
    on_admin_frame(self, t, body, len);
    break;
  case phase::closing:
    break;
  }
}

void on_data(session_ptr self, const uint8_t* ciphertext, size_t size) {
  auto& st = self->state;
  if (st.ph == phase::closing)
    return;
  st.rx_now = steady_clock::now();
  st.plain.clear();
  auto s = st.tls->receive(ciphertext, size, st.plain, st.cipher);
  // Frames decrypted before a close_notify or an error still count.
  if (!st.plain.empty()) {
    auto e =
      st.parser.feed(st.plain.data(), st.plain.size(),
                     [&](codec::frame_type t, const uint8_t* body, size_t len) {
                       on_frame(self, t, body, len);
                       return st.ph != phase::closing;
                     });
    if (e != codec::errc::ok && st.ph != phase::closing) {
      protocol_error(self, codec::to_status(e, "frame").message());
      return;
    }
  }
  if (!s) {
    st.ctx->log->debug("session {}: TLS: {}", st.peer_addr, s.to_string());
    close(self, std::nullopt); // alerts in st.cipher still go out
    return;
  }
  schedule_flush(self);
}

/// Asks for a flush once the messages queued now are handled: answers that
/// arrive together (a store batch) leave in one TLS record and one send().
/// See end_turn.
void schedule_flush(session_ptr self) {
  self->state.flush_wanted = true;
}

/// Encrypts and sends what handlers queued; gives the handshake's buffers
/// back after the login's flush.
void do_flush(session_ptr self) {
  auto& st = self->state;
  st.flush_wanted = false;
  flush_out(self);
  if (st.trim_after_flush) {
    st.trim_after_flush = false;
    trim(self);
  }
}

/// The end of every handler (a `turn` guard): a wanted flush happens now
/// when nothing else waits in the mailbox, else after what waits (a
/// (flush) to itself, behind it). So the usual flush costs no message.
void end_turn(session_ptr self) {
  auto& st = self->state;
  if (!st.flush_wanted)
    return;
  if (st.out.empty() && st.cipher.empty() && !st.trim_after_flush) {
    st.flush_wanted = false;
    return;
  }
  if (self->mailbox().empty()) {
    do_flush(self);
    return;
  }
  if (!st.flush_queued) {
    st.flush_queued = true;
    self->send(self, flush_atom::value);
  }
}


/// The read buffer of this worker thread: sessions read into it and handle
/// the bytes at once, so an idle session holds no 64 KiB buffer of its own.
std::array<uint8_t, 64 * 1024>& read_buffer() {
  thread_local std::array<uint8_t, 64 * 1024> buf;
  return buf;
}

/// Gives back buffer capacity an idle session does not need (what the TLS
/// handshake and a burst left): 10,000 idle users cost what they hold.
void trim(session_ptr self) {
  auto& st = self->state;
  auto shrink = [](auto& v) {
    if (v.empty() && v.capacity() > 0)
      std::remove_reference_t<decltype(v)>{}.swap(v);
  };
  st.plain.clear(); // scratch: what on_data decrypted last
  shrink(st.out);
  shrink(st.cipher);
  shrink(st.plain);
  st.records.clear();
  std::vector<store::log_record>{}.swap(st.records);
  std::vector<uint64_t>{}.swap(st.own_streamed);
  st.scratch = codec::message{};
  if (st.tls)
    st.tls->release_buffers();
}

/// Bytes read per turn before other actors get the thread.
constexpr size_t read_budget = 256 * 1024;

/// Reads and handles what the socket has, unless too many appends of this
/// session wait for the store (then TCP pushes back on the client).
void read_loop(session_ptr self) {
  auto& st = self->state;
  size_t total = 0;
  while (st.ph != phase::closing && st.ch) {
    if (st.appends_in_flight >= max_appends_in_flight) {
      st.read_paused = true;
      return;
    }
    if (total >= read_budget) {
      // More may wait: continue after the actors queued meanwhile.
      if (!st.resume_queued) {
        st.resume_queued = true;
        self->send(self, resume_atom::value);
      }
      return;
    }
    auto& rx = read_buffer();
    size_t n = 0;
    auto r = st.ch->read_some(rx.data(), rx.size(), n);
    total += n;
    if (n > 0)
      on_data(self, rx.data(), n);
    if (r == net::channel::read_result::data)
      continue;
    if (r != net::channel::read_result::drained)
      lost(self);
    return;
  }
}

void resume_reading(session_ptr self) {
  auto& st = self->state;
  if (st.read_paused && st.appends_in_flight < max_appends_in_flight) {
    st.read_paused = false;
    read_loop(self);
  }
}

/// The poller saw the socket become readable and/or writable.
void on_io(session_ptr self) {
  auto& st = self->state;
  if (!st.ch)
    return;
  auto ev = st.ch->take_events();
  if ((ev & net::io_event::writable) != 0 && st.ch->pending() > 0) {
    if (!st.ch->flush()) {
      lost(self);
      return;
    }
    if (st.sent_upto < st.maybe_head)
      pump(self); // streaming may have waited for room
  }
  if ((ev & net::io_event::readable) != 0 && !st.read_paused)
    read_loop(self);
}

void on_tick(session_ptr self) {
  auto& st = self->state;
  auto now = steady_clock::now();
  auto& opts = st.ctx->opts;
  if (st.ph == phase::handshake &&
      now - st.started > seconds(opts.login_timeout_s)) {
    st.ctx->log->info("session {}: no login within {} s", st.peer_addr,
                      opts.login_timeout_s);
    close(self, std::nullopt);
    return;
  }
  if (st.ph == phase::user && now - st.last_rx > seconds(1))
    trim(self); // quiet since the last tick
  if (now - st.last_rx > seconds(opts.idle_timeout_s)) {
    close(self, codec::goodbye{codec::goodbye_reason::idle,
                               "no traffic for " +
                                 std::to_string(opts.idle_timeout_s) +
                                 " s: ping more often"});
    return;
  }
  auto every = st.ph == phase::handshake
                 ? seconds(1)
                 : seconds(std::max<uint32_t>(1, opts.ping_interval_s));
  self->delayed_send(self, every, tick_atom::value);
}

} // namespace

caf::actor make_session_actor(caf::actor_system& sys, int fd,
                              std::shared_ptr<context> ctx) {
  auto fn = [](session_ptr self, int sock,
               std::shared_ptr<context> c) -> caf::behavior {
    auto& st = self->state;
    st.ctx = std::move(c);
    st.parser = codec::frame_parser{st.ctx->opts.max_frame};
    st.tls = std::make_unique<tls::stream>(st.ctx->tls);
    auto me = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
    auto ch = net::channel::open(*st.ctx->poller, sock, [me] {
      if (auto a = caf::actor_cast<caf::actor>(me))
        caf::anon_send(a, io_atom::value);
    });
    if (!ch) {
      st.ctx->log->warn("session: {}", ch.error().to_string());
      st.ph = phase::closing;
      self->quit();
      return {};
    }
    st.ch = std::move(*ch);
    st.peer_addr = st.ch->peer();
    st.host = st.peer_addr.substr(0, st.peer_addr.rfind(':'));
    self->send(self, tick_atom::value);
    return {
      [=](io_atom) {
        turn t{self};
        on_io(self);
      },
      [=](resume_atom) {
        turn t{self};
        self->state.resume_queued = false;
        read_loop(self);
      },
      [=](flush_atom) {
        self->state.flush_queued = false;
        do_flush(self);
      },
      [=](log_atom) {
        turn t{self};
        // Registered: what was appended before the dispatcher knew this
        // session came with no news to it, so read whatever maybe_head says.
        self->state.maybe_head = UINT64_MAX;
        pump(self);
      },
      [=](log_atom, uint64_t head, const record_batch& records) {
        turn t{self};
        offer(self, head, records);
      },
      [=](realtime_atom, const bytes& frame) {
        turn t{self};
        auto& s = self->state;
        if (s.ph != phase::user)
          return;
        // Log records stored before this frame go first: a message is
        // never overtaken by the presence sent after it. Its sender let
        // the presence go once the message was durable, but the news of it
        // may still be on its way here: read the store, whatever
        // maybe_head says.
        s.maybe_head = UINT64_MAX;
        pump(self);
        s.out.insert(s.out.end(), frame.begin(), frame.end());
        schedule_flush(self);
      },
      [=](kick_atom, uint8_t reason, std::string& text) {
        auto& s = self->state;
        auto r = static_cast<codec::goodbye_reason>(reason);
        // A revocation of one token ends only the sessions that used it.
        if (r == codec::goodbye_reason::auth_revoked &&
            s.ctx->store->token_valid(s.token_id, self->state.ctx->now()))
          return;
        close(self, codec::goodbye{r, std::move(text)});
      },
      [=](expire_atom) {
        close(self, codec::goodbye{codec::goodbye_reason::auth_revoked,
                                   "the access token expired: log in again "
                                   "with a new one"});
      },
      [=](shutdown_atom) {
        close(self, codec::goodbye{codec::goodbye_reason::shutdown,
                                   "the server is shutting down: reconnect "
                                   "later"});
      },
      [=](tick_atom) {
        turn t{self};
        on_tick(self);
      },
    };
  };
  return sys.spawn(fn, fd, std::move(ctx));
}

} // namespace parley::srv
