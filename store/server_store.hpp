#pragma once

// The server's tables on LMDB: apps, users, tokens, and each user's log with
// per-device cursors (docs/ARCHITECTURE.md, "The store"). Pure C++: no
// actors, no sockets; the storage actor is its only writer.
//
// Thread-safety: read functions (check_token, head, cursor, read_log, ...)
// may run on any thread concurrently, each in its own short read
// transaction. Write functions (apply, admin functions) must be called by
// one thread at a time (the storage actor); each runs one write transaction.

#include "codec/frames.hpp"
#include "store/lmdb.hpp"

#include <parley/status.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace parley::store {

/// Limits and policies of the server's store.
struct server_store_options {
  env_options env;
  uint32_t retention_s = 30 * 24 * 3600;  ///< Log kept this long.
  uint64_t inbox_quota = 100000;          ///< Unacked records per user.
  uint32_t token_ttl_s = 365 * 24 * 3600; ///< Default token lifetime.
  /// How long after sending a message may be retracted.
  uint32_t retract_window_s = codec::default_retract_window_s;
  /// Gens per journal epoch, 1 to 1024 (docs/ARCHITECTURE.md, "the
  /// journal"): a batch is one gen, a big one up to 8, so an epoch of 64 is
  /// 64 batches of up to ~190 messages and fewer bigger ones. A longer epoch
  /// writes each user's tail page in `log` once for more messages. The
  /// directory remembers its length (meta "jepoch"; 8 before format 4, 16
  /// before session 14); opening with another one moves the whole journal
  /// into `log` first.
  uint32_t journal_epoch = 64;
};

/// On-disk format of the server store; a newer one is refused, older ones
/// are migrated at open (server_store::open).
constexpr uint32_t server_format_version = 4;

/// Why check_token refused a login (codec::login_failure_reason).
struct token_check {
  codec::login_failure_reason reason =
    codec::login_failure_reason::unknown_token;
  bool ok = false;
  uint64_t uid = 0;
  std::string address;
  uint64_t expires_ms = 0;
  std::string token_id; ///< Hex of the token hash prefix (for revocation).
};

/// A token just issued.
struct issued_token {
  std::string app_id;
  std::string address;
  std::string token;
  uint64_t uid = 0;
  uint64_t expires_ms = 0;
};

/// A user as admin_list shows it.
struct user_info {
  std::string address;
  std::string name;
  uint64_t uid = 0;
  bool disabled = false;
  uint64_t head = 0;
};

/// An app as admin_list shows it.
struct app_info {
  std::string app_id;
  std::string name;
};

/// One record of a user's log, as stored: its encoded frame (header + body,
/// the seq already inside) and what the server needs without decoding it.
struct log_record {
  uint64_t seq = 0;
  uint64_t ts_ms = 0;
  uint64_t expires_ms = 0;   ///< 0 = never.
  uint64_t other_uid = 0;    ///< Sender (incoming) or receiver (outgoing).
  std::string origin_device; ///< Outgoing: the device that sent it.
  codec::frame_type type = codec::frame_type::message;
  std::string frame;    ///< Encoded frame, header included.
  bool expired = false; ///< EXPIRED was sent for it (see read_log).
};

/// A log record a batch appended, and whose log it is (server_store::apply).
struct appended_record {
  uint64_t uid = 0;
  log_record rec;
};

// -- write operations, applied in batches (group commit)
// ------------------------

/// Append a message from a logged-in sender: 1:1 (`msg.peer`), or to a group
/// (`msg.group_id`): fanned out on write to the log of every member with
/// `recv` (the sender's own only with recv_loopback), in this one
/// transaction, so every member sees a group's messages in the same order.
struct append_op {
  uint64_t sender_uid = 0;
  std::string app_id;
  std::string sender; ///< Address.
  std::string device; ///< Sending device.
  codec::send msg;
  uint64_t now_ms = 0;
};

/// What became of an append.
struct append_outcome {
  codec::message_status status = codec::message_status::sent;
  std::string text;        ///< For failures: what is wrong, what to do.
  bool duplicate = false;  ///< A resend: answered again, not stored again.
  uint64_t sender_seq = 0; ///< The outgoing copy in the sender's log.
  uint64_t receiver_uid = 0;
  uint64_t receiver_seq = 0;
  uint64_t ts_ms = 0;
  uint32_t receivers = 0; ///< A group message: the members it went to.
};

/// A device acknowledged its log up to `seq`. Sends DELIVERED receipts for
/// the newly acknowledged incoming messages that asked for them.
struct ack_op {
  uint64_t uid = 0;
  std::string device;
  uint64_t seq = 0;
  uint64_t now_ms = 0;
};

/// The user read a conversation (`peer`, or group `group_id`) up to
/// `up_to_seq` of their log: READ receipts go to the senders of its
/// messages that asked for them (a group's name the reading member).
struct read_op {
  uint64_t uid = 0;
  std::string peer;
  uint64_t up_to_seq = 0;
  uint64_t now_ms = 0;
  uint32_t group_id = 0;
};

/// Messages in the user's log expired undelivered: EXPIRED goes to their
/// senders (once per message, however many devices report it).
struct expire_op {
  uint64_t uid = 0;
  std::vector<uint64_t> seqs;
  uint64_t now_ms = 0;
};

/// Sends EXPIRED for messages whose expiry passed while no device of the
/// receiver acknowledged them (at most `limit` per run).
struct sweep_op {
  uint64_t now_ms = 0;
  size_t limit = 1000;
};

/// Trims the logs: records older than the retention that every device of
/// their user acknowledged (or that expired) are deleted, and so are dedup
/// entries older than the retention. Visits users round robin; `budget`
/// bounds the records deleted per run.
struct trim_op {
  uint64_t now_ms = 0;
  size_t budget = 10000;
};

/// A change to a group, checked against the actor's member flags:
///  - group_create: the actor becomes the owner, a member with send, recv
///    and admin; `members` join with their flags (0 = send | recv);
///  - group_members: add (or change the flags of) or remove `members`;
///    admins only; the owner cannot be removed;
///  - group_leave: the actor leaves (the owner cannot: it deletes);
///  - group_delete: the owner only;
///  - group_set: new name and group flags; admins only.
/// A group_event goes to the log of every member concerned, those removed or
/// leaving included, so offline members learn it at their next login.
struct group_op {
  codec::frame_type kind = codec::frame_type::group_create;
  uint64_t actor_uid = 0;
  std::string app_id;
  std::string actor; ///< The actor's address.
  uint32_t group_id = 0;
  std::string name;
  uint32_t flags = 0;
  codec::member_op op = codec::member_op::add;
  std::vector<codec::member> members;
  uint64_t now_ms = 0;
};

/// What became of a group_op: `refusal` says why it was refused
/// (permission_denied, not_found, invalid_argument) and what to do; else
/// `info` is the group after the change (no members after a delete).
struct group_outcome {
  status refusal;
  codec::group_info info;
};

/// Edit or retract (delete for everyone) a message the user sent from
/// `device`, named by its mid (the dedup entry finds it). Retraction only
/// within retract_window_s of sending; a retracted message changes no more.
/// The stored copies the server can find are rewritten (the sender's, and
/// the receiver's of a 1:1 message: flags edited or retracted, the new
/// payload or none); an `update` record goes to the log of the sender (for
/// its other devices) and of every receiver (1:1 peer, or the group's
/// members with recv), so online and offline devices change theirs.
struct change_op {
  codec::update_kind kind = codec::update_kind::edit;
  uint64_t uid = 0;
  std::string sender; ///< Address.
  std::string device;
  uint64_t mid = 0;
  std::string payload; ///< Edit: the new payload.
  uint64_t now_ms = 0;
};

using write_op = std::variant<append_op, ack_op, read_op, expire_op, sweep_op,
                              trim_op, group_op, change_op>;

/// The outcome of one write_op; `touched` lists users whose log grew.
struct write_outcome {
  status st;
  append_outcome append; ///< For append_op.
  group_outcome group;   ///< For group_op.
  status refusal;        ///< For change_op: why it was refused, if it was.
};

/// The server's tables.
class server_store {
 public:
  /// Opens (or creates) the store in `dir`. Fails with version_mismatch for
  /// a newer on-disk format.
  static result<std::unique_ptr<server_store>>
  open(const std::string& dir, const server_store_options& opts);

  ~server_store();

  // -- admin (each call is one write transaction)
  // -------------------------------

  /// Creates an app. Fails with already_exists.
  status app_add(const std::string& app_id, const std::string& name);

  /// Deletes an app with its users, tokens and logs. Returns the uids that
  /// were deleted (their sessions must end).
  result<std::vector<uint64_t>> app_delete(const std::string& app_id);

  /// Creates the user if missing and issues a token (ttl 0 = default).
  result<issued_token> user_add(const std::string& app_id,
                                const std::string& address,
                                const std::string& name, uint32_t ttl_s,
                                uint64_t now_ms);

  /// user_add for each of `addresses` (no names), all in one transaction:
  /// one durable commit for the lot. All or nothing: a malformed or
  /// repeated address, or a missing app, fails the call and creates no one.
  result<std::vector<issued_token>>
  users_add(const std::string& app_id,
            const std::vector<std::string>& addresses, uint32_t ttl_s,
            uint64_t now_ms);

  /// Issues another token for an existing user.
  result<issued_token> token_add(const std::string& app_id,
                                 const std::string& address, uint32_t ttl_s,
                                 uint64_t now_ms);

  /// Revokes one token (or all of the user's when `token` is empty). Returns
  /// the user's uid.
  result<uint64_t> token_revoke(const std::string& app_id,
                                const std::string& address,
                                const std::string& token);

  /// Disables or enables a user. Returns its uid.
  result<uint64_t> user_set_disabled(const std::string& app_id,
                                     const std::string& address, bool disabled);

  /// Deletes a user with its tokens, cursors and log. Returns its uid.
  result<uint64_t> user_delete(const std::string& app_id,
                               const std::string& address);

  /// Lists apps after `after` (exclusive), at most `limit`.
  result<std::vector<app_info>> apps_list(const std::string& after,
                                          uint32_t limit);

  /// Lists users of an app after `after`, at most `limit`.
  result<std::vector<user_info>> users_list(const std::string& app_id,
                                            const std::string& after,
                                            uint32_t limit);

  // -- messaging
  // ------------------------------------------------------------------

  /// Applies `ops` in one write transaction and one sync (group commit).
  /// `out` gets one outcome per op; `touched` the uids whose log grew
  /// (ascending, each once) and, when `heads` is given, the head of each
  /// of their logs after the batch (same order: a reader whose stream is
  /// at a head has nothing new to read). When the transaction itself fails
  /// every outcome carries that status.
  /// With `appended`, it also gets every log record the batch appended
  /// (whose op succeeded), in the order written, so that the records can be
  /// streamed without reading them back.
  status apply(std::vector<write_op>& ops, std::vector<write_outcome>& out,
               std::vector<uint64_t>& touched,
               std::vector<uint64_t>* heads = nullptr,
               std::vector<appended_record>* appended = nullptr);

  // -- reads (any thread)
  // -----------------------------------------------------------

  /// Checks a login. Constant-time with respect to the token's bytes: the
  /// token is hashed and the hash looked up.
  token_check check_token(const std::string& app_id, const std::string& token,
                          uint64_t now_ms);

  /// Current state of a token by its id (for revocation while logged in).
  bool token_valid(const std::string& token_id, uint64_t now_ms);

  /// Highest sequence in the user's log (0 when empty).
  uint64_t head(uint64_t uid);

  /// The device's cursor. A device never seen starts where the user's least
  /// advanced device stands (0 for the first), and `known` is set false: the
  /// caller records that start with an ack_op so later logins resume there.
  uint64_t cursor(uint64_t uid, const std::string& device,
                  bool* known = nullptr);

  /// A group with its members, for one of its members; not_found for
  /// anybody else (whether the group exists or not).
  result<codec::group_info> group_get(uint64_t uid, uint32_t group_id);

  /// The groups `uid` is a member of, by id.
  result<std::vector<codec::group_summary>> groups_of(uint64_t uid);

  /// The uids of a group's members with `recv`, `uid` left out, for one of
  /// its members (presence goes to them); not_found for anybody else.
  result<std::vector<uint64_t>> group_receivers(uint64_t uid,
                                                uint32_t group_id);

  /// Reads records with seq > `after`, at most `max_records` and about
  /// `max_bytes` of frames (at least one record when any). When given,
  /// `delivered_upto` receives the highest seq any device of the user
  /// acknowledged (records up to it are delivered, whatever their expiry).
  /// With `now_ms`, records past their expiry whose sender got EXPIRED are
  /// marked `expired` (never to be delivered).
  status read_log(uint64_t uid, uint64_t after, size_t max_records,
                  size_t max_bytes, std::vector<log_record>& out,
                  uint64_t* delivered_upto = nullptr, uint64_t now_ms = 0);

  /// One page of history sync: the messages of one conversation of `uid`
  /// (`peer`, or `group_id` when not 0) in its log, newest first, with seq
  /// below `before_seq` (0: from the newest), at most `count`, scanning at
  /// most `scan_budget` records, and stopping once the payloads passed
  /// `max_bytes` (at least one message per page). Messages that expired undelivered are left
  /// out; edits and retractions found in the scanned records are applied
  /// (1:1 copies are rewritten in place anyway). `page.complete` says the
  /// scan reached the start of the log, `page.resume_before` where the next
  /// page starts.
  status read_conversation(uint64_t uid, const std::string& peer,
                           uint32_t group_id, uint64_t before_seq,
                           size_t count, size_t scan_budget,
                           size_t max_bytes, codec::sync_page& page);

  /// Resolves a user's uid (0 when unknown).
  uint64_t uid_of(const std::string& app_id, const std::string& address);

  /// Moves every record of the journal into the per-user log now (apply()
  /// does it an epoch at a time): afterwards each user's log is one range of
  /// the `log` table, as tools that read the tables directly expect.
  status flush_journal();

  /// Flushes to disk (for nosync mode at shutdown).
  status sync();

  /// The LMDB environment (for statistics).
  env& environment();

  /// Number of records in the user's log (for tests and statistics).
  uint64_t log_size(uint64_t uid);

  struct impl; ///< The implementation (store/server_store.cpp).

 private:
  explicit server_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace parley::store
