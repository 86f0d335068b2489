#pragma once

// libparley's client: the functional interface (a thread-safe synchronous
// facade) and the callback interface (listeners), in the anatomy of a
// Mesibo application:
//
//   1. credentials:  opts.app_id, opts.token (a user's access token)
//   2. listeners:    client->add_listener(my_listener)
//   3. database:     opts.database = "alice.db" (optional)
//   4. start:        client->start()
//
//   parley::client_options opts;
//   opts.app_id = "demo";  opts.token = "pt_...";  opts.ca_file = "cert.pem";
//   auto c = parley::client::create(opts);          // result<unique_ptr>
//   (*c)->add_listener(std::make_shared<my_listener>());
//   (*c)->start();
//   auto id = (*c)->send("bob", "hello");           // result<uint64_t>
//
// Threading contract (written down as LMDB writes its own):
// - Every member function of client is thread-safe and may be called from
//   any thread, including from inside a listener callback.
// - A client's callbacks never run concurrently with each other and arrive
//   in the order the events happened. They run on the runtime's callback
//   threads, never on an actor thread and never on the caller's thread.
// - A callback should return quickly: it holds up that client's later
//   events (not other clients').
// - A client must be destroyed (or stopped) before its runtime; destroying
//   a client stops it and waits until no callback of it runs.
// - Inline callbacks (runtime_options::callback_threads = 0), for
//   simulators and hosts whose callbacks are short: callbacks run on the
//   actor thread that handled the event (some also on the caller's thread:
//   on_sync, on_message_update of one's own edit), still one at a time per
//   client and in order, with no hop to another thread. Such a callback
//   must not block, and may call only what does not wait for a client
//   actor: send(), send_to_group(), forward(), get(), read sessions,
//   summary() and the like; stop() takes effect after it returns. Other
//   calls made from it fail at once with failed_precondition.

#include <parley/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace caf {
class actor_system; // only named: see <parley/interop.hpp>
} // namespace caf

namespace parley {

struct runtime_options;
class runtime;

/// A runtime on a host's actor system (see <parley/interop.hpp>).
result<std::shared_ptr<runtime>> interop_runtime(caf::actor_system& sys,
                                                 const runtime_options& opts);

/// Connection status (Mesibo's numbers).
enum class connection_status : uint8_t {
  unknown = 0,
  online = 1,          ///< Logged in: messages flow.
  offline = 2,         ///< Disconnected; reconnecting by itself.
  signout = 3,         ///< This device logged in elsewhere: stopped for good.
  authfail = 4,        ///< The token was refused (see the reason): stopped.
  stopped = 5,         ///< stop() was called.
  connecting = 6,      ///< Connecting or logging in.
  connect_failure = 7, ///< The server is unreachable; retrying with backoff.
  no_network = 8,      ///< No route to the server; retrying.
  shutdown = 22,       ///< The server is shutting down; retrying later.
};

/// Lower-case name ("online").
const char* to_string(connection_status s) noexcept;

/// Status of a message (Mesibo's numbers; failures have bit 0x80).
enum class message_status : uint8_t {
  outbox = 0x00,        ///< Stored locally, not yet accepted by the server.
  sent = 0x01,          ///< Durable on the server.
  delivered = 0x02,     ///< Stored by a device of the receiver.
  read = 0x03,          ///< Read by the receiver.
  received_new = 0x12,  ///< Incoming, not read yet.
  received_read = 0x13, ///< Incoming, read.
  fail = 0x80,
  user_offline = 0x81, ///< Expiry 0 and the peer had no device online.
  inbox_full = 0x82,   ///< The peer has too many undelivered messages.
  invalid_dest = 0x83, ///< No such user.
  expired = 0x84,      ///< Not delivered before its expiry.
  rejected = 0x89,     ///< Refused by the server's hook (see the reason).
  not_member = 0x91,   ///< Not allowed to send to that group.
};

/// Lower-case name ("delivered").
const char* to_string(message_status s) noexcept;

/// True for the failure statuses.
constexpr bool is_failure(message_status s) noexcept {
  return (static_cast<uint8_t>(s) & 0x80) != 0;
}

/// Message flags (Mesibo's numbers).
namespace flags {
constexpr uint16_t delivery_receipt = 0x01;
constexpr uint16_t read_receipt = 0x02;
// Parley's, set on stored messages (not by a sender):
constexpr uint16_t edited = 0x100;    ///< Its sender edited it.
constexpr uint16_t retracted = 0x200; ///< Deleted for everyone: no payload.
constexpr uint16_t forwarded = 0x400; ///< A forwarded copy.
} // namespace flags

/// A message, sent or received.
struct message {
  uint64_t id = 0;       ///< Local id (for an outgoing message: its mid).
  uint64_t mid = 0;      ///< The sender's id of the message.
  std::string peer;      ///< The other user of the conversation.
  uint32_t group_id = 0; ///< 0 for 1:1.
  std::string sender;
  bool outgoing = false; ///< Sent by this user (maybe from another device).
  uint16_t kind = 0;     ///< Application-defined type.
  uint16_t flags = 0;
  uint32_t expiry_s = 0;
  uint64_t in_reply_to = 0;
  uint64_t ts_ms = 0; ///< Server time.
  message_status status = message_status::outbox;
  std::string payload;
};

/// A member's permissions in a group (Mesibo's numbers).
namespace member_flags {
constexpr uint32_t send = 0x1;
constexpr uint32_t recv = 0x2;
constexpr uint32_t admin = 0x1000;
} // namespace member_flags

/// A group's settings (Mesibo's numbers).
namespace group_flags {
constexpr uint32_t send_by_selected = 0x1; ///< Only members with `send`.
constexpr uint32_t send_by_anyone = 0x2;   ///< Any user of the app.
constexpr uint32_t recv_loopback = 0x80;   ///< Senders get their own too.
} // namespace group_flags

/// One member's status of a group message (client::group_receipts).
struct member_receipt {
  std::string member;
  message_status status = message_status::delivered;
  uint64_t ts_ms = 0;
};

/// A member of a group.
struct group_member {
  std::string address;
  uint32_t flags = 0; ///< member_flags; 0 on add = send | recv.
};

/// A group as the server shows it to a member.
struct group_info {
  uint32_t id = 0;
  std::string name;
  uint32_t flags = 0; ///< group_flags
  std::string owner;
  std::vector<group_member> members; ///< Empty in groups() lists.
  uint32_t my_flags = 0;             ///< This user's member_flags.
};

/// What happened to a group this user belongs to.
enum class group_event_kind : uint8_t {
  created = 1,
  members_added = 2,
  members_removed = 3,
  left = 4,
  settings_changed = 5,
  deleted = 6,
};

/// A group event (listener::on_group_event), each delivered once, also to
/// members that were offline when it happened.
struct group_event {
  uint32_t group_id = 0;
  group_event_kind kind = group_event_kind::created;
  std::string actor; ///< Who did it.
  std::string name;  ///< The group's name after it.
  uint32_t flags = 0;
  std::vector<group_member> members; ///< The members concerned.
  uint64_t ts_ms = 0;
};

/// Presence (Mesibo's numbers; OFFLINE is Parley's). Never stored: what a
/// device misses while offline is gone.
enum class presence_kind : uint8_t {
  online = 1,         ///< Came online (subscriptions), or "I am here".
  typing = 3,         ///< Typing in the conversation.
  typing_cleared = 4, ///< Stopped typing.
  offline = 5,        ///< The last device went offline (subscriptions).
  joined = 10,        ///< Joined the conversation (application-defined).
  left = 11,          ///< Left the conversation (application-defined).
};

/// Lower-case name ("typing").
const char* to_string(presence_kind k) noexcept;

/// Presence of another user (listener::on_presence).
struct presence {
  std::string peer;      ///< Whom it is about.
  uint32_t group_id = 0; ///< The group it was sent to, 0 for 1:1.
  presence_kind kind = presence_kind::online;
  uint64_t ts_ms = 0; ///< Server time.
};

/// Where a message came from (Mesibo's origins).
enum class message_origin : uint8_t {
  realtime = 0, ///< Arrived now.
  database = 1, ///< Read from the local database.
};

/// Callbacks. Override what you need; each default does nothing.
class listener {
 public:
  virtual ~listener() = default;

  /// The connection status changed. `reason` says why for failures
  /// (AUTHFAIL: unknown, expired or revoked token, or another app's).
  virtual void on_connection_status(connection_status, const std::string&) {
    // nop
  }

  /// A message arrived (each once, even across reconnects).
  virtual void on_message(const message&, message_origin) {
    // nop
  }

  /// The status of an outgoing message changed. `reason` explains
  /// failures.
  virtual void on_message_status(const message&, const std::string&) {
    // nop
  }

  /// A member of a group got (DELIVERED) or read (READ) a group message
  /// this device sent. The message's own status is the summary: SENT until
  /// every member it went to has it, then DELIVERED, then READ (the same
  /// on_message_status as for 1:1). client::group_receipts lists them all.
  virtual void on_member_status(const message&, const std::string& /*member*/,
                                message_status) {
    // nop
  }

  /// A stored message changed: its sender edited it (flags::edited, the
  /// new payload) or retracted it (flags::retracted, payload empty). Told
  /// once per change, on every device of the sender and the receivers,
  /// also to those offline when it happened.
  virtual void on_message_update(const message&) {
    // nop
  }

  /// Something happened to a group this user belongs to (created, members
  /// added or removed, left, settings changed, deleted).
  virtual void on_group_event(const group_event&) {
    // nop
  }

  /// History sync (client::sync) stored `count` older messages of the
  /// conversation with `peer` (or of group `group_id`): read them with a
  /// read session. They are not told through on_message.
  virtual void on_sync(const std::string& /*peer*/, uint32_t /*group_id*/,
                       size_t /*count*/) {
    // nop
  }

  /// Presence of another user: typing and the like from a peer or a group
  /// member, and online/offline of the users this client subscribed to
  /// (client::subscribe_presence). Never after the message sent before it.
  virtual void on_presence(const presence&) {
    // nop
  }
};

/// How a runtime is set up.
struct runtime_options {
  /// Actor worker threads; 0 = the number of cores, at least 2.
  uint32_t threads = 0;
  /// Threads that run listener callbacks (shared by all clients); 0 runs
  /// them inline on the actor threads (see the threading contract above).
  uint32_t callback_threads = 2;
};

/// The engine clients run on: one actor system and its I/O, shared by any
/// number of clients (thousands: parley-sim). Never a thread per client.
class runtime {
 public:
  /// Creates a runtime.
  static result<std::shared_ptr<runtime>> create(const runtime_options& = {});

  /// A process-wide runtime, created on first use.
  static std::shared_ptr<runtime> default_runtime();

  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  struct impl;
  impl& internals() { return *impl_; }

 private:
  friend result<std::shared_ptr<runtime>>
  interop_runtime(caf::actor_system&, const runtime_options&);

  explicit runtime(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// How a client connects.
struct client_options {
  std::string app_id; ///< The app the token was issued for.
  std::string token;  ///< The user's access token.
  std::string host = "127.0.0.1";
  uint16_t port = 5290;
  /// Trust: the server's certificate (or its CA) as PEM, or the SHA-256
  /// fingerprint of its certificate. Verification is always on.
  std::string ca_file;
  std::string fingerprint;
  /// Resume the TLS session of the last login when reconnecting (a TLS 1.3
  /// ticket, kept in memory): the handshake skips the certificate and its
  /// signature, about 40 % of the CPU of a full one for both sides together
  /// (BENCHMARKS.md). The key exchange is still fresh, and a refused ticket
  /// (parleyd restarted, or two hours passed) means a full handshake.
  bool tls_resume = true;
  /// Directory of the local database (LMDB). Empty keeps the database in
  /// memory: nothing survives the client, no file is opened (what a
  /// simulator of thousands of users wants), and at most
  /// `memory_messages` messages are held: beyond that the oldest finished
  /// ones (received, or sent and at their last status) are dropped. A
  /// conversation whose messages were all dropped stays in summary() with
  /// its last message; beyond `memory_idle_conversations` of those, the
  /// ones that emptied first are forgotten (0: never).
  std::string database;
  size_t memory_messages = 100000;
  size_t memory_idle_conversations = 10000;
  /// Device id; empty: made once and kept in the database.
  std::string device_id;
  /// Reconnect backoff: first delay and the ceiling (with jitter).
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{30000};
  /// How long synchronous calls wait for the client's actor.
  std::chrono::milliseconds call_timeout{10000};
};

/// Options of one message.
struct send_options {
  uint16_t flags = flags::delivery_receipt | flags::read_receipt;
  uint32_t expiry_s = 7 * 24 * 3600; ///< 0 = real-time only.
  uint16_t kind = 0;
  uint64_t in_reply_to = 0;
};

/// A conversation as the summary shows it.
struct conversation {
  std::string peer;
  uint32_t group_id = 0;
  message last;
  uint64_t unread = 0;
};

class client;

/// Pages through a conversation in the local database.
class read_session {
 public:
  /// The next page of at most `count` messages (newest first unless the
  /// session was made oldest first); empty at the end.
  result<std::vector<message>> read(size_t count);

  struct impl;
  explicit read_session(std::unique_ptr<impl> p);
  ~read_session();

 private:
  std::unique_ptr<impl> impl_;
};

class client {
 public:
  /// Creates a client (not started). Opens the database when given.
  static result<std::unique_ptr<client>>
  create(const client_options& opts,
         std::shared_ptr<runtime> rt = runtime::default_runtime());

  /// Stops the client and waits until none of its callbacks runs.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Adds or removes a listener (no duplicates).
  void add_listener(std::shared_ptr<listener> l);
  void remove_listener(const std::shared_ptr<listener>& l);

  /// Connects and logs in; returns at once (watch the connection status).
  /// Reconnects by itself until stop(), SIGNOUT or AUTHFAIL.
  status start();

  /// Disconnects; status STOPPED. start() may be called again.
  void stop();

  /// Drops the connection at once, as a lost network would (no goodbye),
  /// and connects again without waiting for the backoff: for an
  /// application that knows the network changed, and for fault injection
  /// (parley-sim --drop-connections). Nothing is lost: what was not
  /// acknowledged goes out again, and nothing arrives twice. Errors:
  /// failed_precondition when the client is not started.
  status reconnect();

  /// The current connection status.
  connection_status connection() const;

  /// True while online on a connection whose TLS handshake resumed the
  /// session of the login before (client_options::tls_resume); false for a
  /// full handshake and while offline.
  bool tls_resumed() const;

  /// The device id in use.
  const std::string& device_id() const;

  /// Sends a message; returns its id at once (status OUTBOX): it is stored
  /// in the local database by the calling thread, without waiting for the
  /// connection. It goes out when online and survives a restart when there
  /// is a database. Errors: invalid_argument (peer or payload too long), or
  /// the database's error.
  result<uint64_t> send(const std::string& peer, const std::string& payload,
                        const send_options& opts = {});

  /// Sends a message to a group; like send(). The group's members get it
  /// in one order; NOT_MEMBER when this user may not send to it.
  result<uint64_t> send_to_group(uint32_t group_id, const std::string& payload,
                                 const send_options& opts = {});

  // -- groups (need the connection: they fail with unavailable offline)
  // ----------------------------------------------------------

  /// Creates a group owned by this user (an admin member) with `members`.
  result<group_info> create_group(const std::string& name,
                                  const std::vector<group_member>& members,
                                  uint32_t flags = 0);

  /// Adds members, or changes their flags. Admins only
  /// (permission_denied otherwise, with the reason).
  status add_group_members(uint32_t group_id,
                           const std::vector<group_member>& members);

  /// Removes members. Admins only; the owner cannot be removed.
  status remove_group_members(uint32_t group_id,
                              const std::vector<std::string>& addresses);

  /// Leaves a group (the owner deletes it instead).
  status leave_group(uint32_t group_id);

  /// Deletes a group. Its owner only.
  status delete_group(uint32_t group_id);

  /// Renames a group and sets its flags. Admins only.
  status set_group(uint32_t group_id, const std::string& name, uint32_t flags);

  /// One group with its members (not_found unless this user is a member).
  result<group_info> group(uint32_t group_id);

  /// The groups this user belongs to (without their members).
  result<std::vector<group_info>> groups();

  // -- presence (never stored; needs the connection)
  // ----------------------------------------------------------

  /// Tells `peer`'s online devices (typing, typing_cleared, joined, left,
  /// online). Errors: unavailable when offline (presence is not queued),
  /// invalid_argument for offline (the server sends that itself).
  status send_presence(const std::string& peer, presence_kind kind);

  /// Tells the online members of a group (not this user's other devices).
  status send_group_presence(uint32_t group_id, presence_kind kind);

  /// Watches whether these users are online: on_presence gets online or
  /// offline for each at once, then at every change. Kept across
  /// reconnects (and subscribed again at each login) until
  /// unsubscribe_presence; works while offline. Unknown users are refused
  /// by the server (it logs why); at most 1000 users.
  status subscribe_presence(const std::vector<std::string>& users);

  /// Stops watching these users.
  status unsubscribe_presence(const std::vector<std::string>& users);

  /// Sends an outgoing message again after a failure (or while still in the
  /// outbox): it goes back to OUTBOX and on to SENT. Errors: not_found,
  /// failed_precondition when the server accepted it already.
  status resend(uint64_t id);

  /// Sends a copy of a stored message to another peer; returns the new id.
  /// The copy has flags::forwarded.
  result<uint64_t> forward(uint64_t id, const std::string& peer);

  /// Sends a copy of a stored message to a group.
  result<uint64_t> forward_to_group(uint64_t id, uint32_t group_id);

  /// Replaces the payload of a message sent from this device, for the
  /// receivers too (their on_message_update). Needs the connection; waits
  /// for the server. Errors: not_found, failed_precondition (not sent from
  /// this device, not SENT yet, or retracted), invalid_argument (too
  /// long), unavailable (offline).
  status edit(uint64_t id, const std::string& payload);

  /// Deletes a message sent from this device for everyone, within the
  /// server's retraction window (default 3600 s after sending; after it:
  /// failed_precondition, saying so). Errors as edit().
  status retract(uint64_t id);

  /// Deletes a message from the local database.
  status remove(uint64_t id);

  /// Marks the conversation with `peer` read up to message `up_to` (0:
  /// all) and sends READ to the peer for the messages that asked for it.
  status mark_read(const std::string& peer, uint64_t up_to = 0);

  /// History sync: pulls older messages of the conversation with `peer`
  /// from the server's log (a new device, a reinstall, an evicted cache)
  /// into the local database, page by page backwards from where the last
  /// sync stopped (the first time: from where this database's device
  /// started, its first login; what came after, the stream brought),
  /// until `count` messages new to this database were stored
  /// or the server's history (its retention) is exhausted. Returns how many
  /// were stored (0: nothing older is left) and tells on_sync. Synced
  /// incoming messages count as read. Needs the connection (unavailable
  /// otherwise).
  result<size_t> sync(const std::string& peer, size_t count = 50);

  /// The same for a group's conversation.
  result<size_t> sync_group(uint32_t group_id, size_t count = 50);

  /// Marks a group's conversation read up to message `up_to` (0: all) and
  /// sends READ to the senders that asked for it (they learn which member
  /// read it).
  status mark_group_read(uint32_t group_id, uint64_t up_to = 0);

  /// The members' statuses of a group message this device sent (those
  /// that have it; the others are still at SENT).
  result<std::vector<member_receipt>> group_receipts(uint64_t id);

  /// One message from the local database.
  result<message> get(uint64_t id);

  /// A read session over the conversation with `peer`.
  std::unique_ptr<read_session> read_session_for(const std::string& peer,
                                                 bool oldest_first = false);

  /// Every conversation: last message and unread count, newest first.
  result<std::vector<conversation>> summary();

  struct impl;

 private:
  explicit client(std::shared_ptr<impl> p);
  std::shared_ptr<impl> impl_;
};

} // namespace parley
