#pragma once

// Every frame of the Parley protocol as a plain struct. docs/PROTOCOL.md gives
// the byte layout; codec/fields.hpp lists each struct's fields in wire order.
// Strings hold UTF-8 text or raw bytes (payloads); integers are host values.
//
// Direction: C→S client to server, S→C server to client, A→S admin to server.
// A frame that answers a request carries the request's `req` id.

#include "codec/protocol.hpp"

#include <parley/status.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace parley::codec {

// -- shared parts
// ------------------------------------------------------------------

/// Reference to a file hosted by the server, carried by a message.
struct file_ref {
  uint64_t file_id = 0;  ///< Server-assigned id (from upload_ready).
  uint64_t size = 0;     ///< Bytes.
  std::string name;      ///< File name, at most max_name bytes.
  std::string mime;      ///< MIME type, at most max_name bytes.
  std::string thumbnail; ///< Optional small preview, at most max_thumbnail.
  std::string url;       ///< Optional external URL instead of a hosted file.
};

/// A group member and its permissions (member_flags).
struct member {
  std::string address;
  uint32_t flags = 0;
};

/// One token admin_users_add issued.
struct token_grant {
  std::string address;
  std::string token;
  uint64_t expires_at_ms = 0; ///< 0 = does not expire.
};

/// One group as listed by group_list_page.
struct group_summary {
  uint32_t group_id = 0;
  std::string name;
  uint32_t flags = 0;    ///< group_flags
  uint32_t my_flags = 0; ///< The caller's member_flags.
};

// -- session family
// -------------------------------------------------------------------

/// C→S, first frame of a user connection: protocol version and credentials.
struct hello {
  static constexpr frame_type type = frame_type::hello;
  uint16_t version = protocol_version;
  std::string app_id;    ///< At most max_app_id bytes.
  std::string token;     ///< Access token, at most max_token bytes.
  std::string device_id; ///< Chosen by the client, at most max_device_id.
  std::string client;    ///< Free-form client name and version.
  uint32_t window =
    0; ///< Unacked log records the server may send; 0 = default.
};

/// S→C, login accepted.
struct login_ok {
  static constexpr frame_type type = frame_type::login_ok;
  std::string address;          ///< The user the token belongs to.
  uint64_t server_time_ms = 0;  ///< Server clock, ms since the Unix epoch.
  uint64_t head_seq = 0;        ///< Highest sequence in the user's log.
  uint64_t cursor = 0;          ///< This device's cursor (last acked seq).
  uint32_t max_frame = 0;       ///< Largest frame body the server accepts.
  uint32_t ping_interval_s = 0; ///< The client should ping this often.
  uint32_t window = 0;          ///< Window the server will use.
  std::string server;           ///< Server name and version.
};

/// S→C, login refused; the connection closes after it.
struct login_failed {
  static constexpr frame_type type = frame_type::login_failed;
  login_failure_reason reason = login_failure_reason::unknown_token;
  std::string text; ///< What is wrong and what to do.
};

/// Either direction; the peer answers with pong carrying the same nonce.
struct ping {
  static constexpr frame_type type = frame_type::ping;
  uint64_t nonce = 0;
};

/// Either direction; answers a ping.
struct pong {
  static constexpr frame_type type = frame_type::pong;
  uint64_t nonce = 0;
};

/// Either direction; the sender closes the connection after it.
struct goodbye {
  static constexpr frame_type type = frame_type::goodbye;
  goodbye_reason reason = goodbye_reason::normal;
  std::string text;
};

/// S→C, a request or frame could not be served. `ref` names the request id
/// (or message id) it relates to, 0 when none.
struct server_error {
  static constexpr frame_type type = frame_type::server_error;
  status_code code = status_code::internal;
  uint64_t ref = 0;
  std::string text;
};

/// S→C or S→A, the outcome of a request that has no dedicated answer frame.
struct reply {
  static constexpr frame_type type = frame_type::reply;
  uint64_t req = 0;
  status_code code = status_code::ok;
  std::string text; ///< Empty on success; what is wrong and what to do.
  std::string body; ///< Request-specific (JSON for admin_list).
};

/// A→S, first frame of an admin connection.
struct admin_hello {
  static constexpr frame_type type = frame_type::admin_hello;
  uint16_t version = protocol_version;
  std::string key; ///< The admin key from the server's data directory.
};

// -- message family
// ---------------------------------------------------------------------

/// C→S, send a message to a peer (1:1) or a group (exactly one of the two).
struct send {
  static constexpr frame_type type = frame_type::send;
  uint64_t mid = 0;      ///< Client id, unique per device; dedup key.
  std::string peer;      ///< Receiver address, empty for a group.
  uint32_t group_id = 0; ///< Group, 0 for 1:1.
  uint16_t flags = 0;    ///< message_flags
  uint32_t expiry_s = default_expiry_s; ///< 0 = real-time only.
  uint16_t kind = 0;                    ///< Application-defined message type.
  uint64_t in_reply_to = 0; ///< mid of the message answered, 0 for none.
  std::string payload;      ///< At most max_payload bytes.
  std::optional<file_ref> file;
};

/// S→C, a message record from the user's log (incoming, or outgoing from
/// another device of the same user).
struct message {
  static constexpr frame_type type = frame_type::message;
  uint64_t seq = 0;      ///< Sequence in the receiving user's log.
  uint64_t ts_ms = 0;    ///< Server time the message was accepted.
  std::string sender;    ///< Who sent it.
  std::string peer;      ///< The conversation: the other user (1:1).
  uint32_t group_id = 0; ///< The conversation: the group, 0 for 1:1.
  uint64_t mid = 0;      ///< The sender's message id.
  uint16_t flags = 0;
  uint16_t kind = 0;
  uint64_t in_reply_to = 0;
  bool outgoing = false; ///< Sent by this user (from another device).
  std::string payload;
  std::optional<file_ref> file;
};

/// C→S, cumulative: every log record up to `seq` is stored by the client.
struct ack {
  static constexpr frame_type type = frame_type::ack;
  uint64_t seq = 0;
};

/// S→C, a status change of a message this user sent. `seq` is 0 for an
/// immediate answer (SENT, failures) and the log sequence for a stored
/// receipt (DELIVERED, READ, EXPIRED), which the client acks like a message.
struct status_update {
  static constexpr frame_type type = frame_type::status_update;
  uint64_t seq = 0;
  uint64_t mid = 0;      ///< The sender's message id.
  std::string peer;      ///< 1:1 receiver.
  uint32_t group_id = 0; ///< Group, 0 for 1:1.
  std::string member;    ///< Group receipts: the member it concerns.
  message_status value = message_status::sent;
  uint64_t ts_ms = 0;
  std::string text; ///< For failures: why, and what to do.
  /// SENT of a group message: the members it went to (the sender's
  /// summary status is DELIVERED or READ once all of them are).
  uint32_t receivers = 0;
};

/// C→S, the user read a conversation up to `up_to_seq` of their own log;
/// the server sends READ to the senders that asked for read receipts.
struct read {
  static constexpr frame_type type = frame_type::read;
  std::string peer;
  uint32_t group_id = 0;
  uint64_t up_to_seq = 0;
};

// -- presence family
// ------------------------------------------------------------------------

/// Either direction, never stored. C→S: `peer` is the target (or group);
/// S→C: `peer` is the user the presence is about.
struct presence {
  static constexpr frame_type type = frame_type::presence;
  std::string peer;
  uint32_t group_id = 0;
  presence_kind kind = presence_kind::online;
  uint64_t ts_ms = 0;
};

/// C→S, (un)subscribe to the online/offline presence of users.
struct presence_subscribe {
  static constexpr frame_type type = frame_type::presence_subscribe;
  bool subscribe = true;
  std::vector<std::string> peers;
};

// -- changes family
// ---------------------------------------------------------------------------

/// C→S, replace the payload of a message this user sent.
struct edit {
  static constexpr frame_type type = frame_type::edit;
  uint64_t req = 0;
  uint64_t mid = 0;
  std::string payload;
};

/// C→S, delete a message this user sent for everyone (within the window).
struct retract {
  static constexpr frame_type type = frame_type::retract;
  uint64_t req = 0;
  uint64_t mid = 0;
};

/// S→C, a log record changing an earlier message (edit or retraction).
struct update {
  static constexpr frame_type type = frame_type::update;
  uint64_t seq = 0;
  uint64_t ts_ms = 0;
  std::string sender;
  std::string peer;
  uint32_t group_id = 0;
  uint64_t mid = 0;
  update_kind kind = update_kind::edit;
  std::string payload; ///< New payload for an edit, empty for a retraction.
};

/// C→S, older history of a conversation from the user's log.
struct sync_request {
  static constexpr frame_type type = frame_type::sync_request;
  uint64_t req = 0;
  std::string peer;
  uint32_t group_id = 0;
  uint64_t before_seq = 0; ///< 0 = from the newest.
  uint32_t count = 0;
};

/// S→C, one page of history, newest first.
struct sync_page {
  static constexpr frame_type type = frame_type::sync_page;
  uint64_t req = 0;
  bool complete = false; ///< Nothing older is left in the log.
  /// Where the scan stopped: the before_seq of the next page (a page may
  /// hold fewer than `count` messages, even none, and still not be the
  /// last: the server scans a bounded number of log records per page).
  uint64_t resume_before = 0;
  std::vector<message> messages;
};

// -- group family
// ---------------------------------------------------------------------------

/// C→S, create a group; the creator becomes its owner and admin.
struct group_create {
  static constexpr frame_type type = frame_type::group_create;
  uint64_t req = 0;
  std::string name;
  uint32_t flags = 0;
  std::vector<member> members;
};

/// C→S, add (or change the flags of) or remove members. Admins only.
struct group_members {
  static constexpr frame_type type = frame_type::group_members;
  uint64_t req = 0;
  uint32_t group_id = 0;
  member_op op = member_op::add;
  std::vector<member> members;
};

/// C→S, leave a group.
struct group_leave {
  static constexpr frame_type type = frame_type::group_leave;
  uint64_t req = 0;
  uint32_t group_id = 0;
};

/// C→S, delete a group. Owner only.
struct group_delete {
  static constexpr frame_type type = frame_type::group_delete;
  uint64_t req = 0;
  uint32_t group_id = 0;
};

/// C→S, list the groups the user is a member of.
struct group_list {
  static constexpr frame_type type = frame_type::group_list;
  uint64_t req = 0;
};

/// C→S, one group with its members.
struct group_get {
  static constexpr frame_type type = frame_type::group_get;
  uint64_t req = 0;
  uint32_t group_id = 0;
};

/// C→S, change a group's name and flags. Admins only.
struct group_set {
  static constexpr frame_type type = frame_type::group_set;
  uint64_t req = 0;
  uint32_t group_id = 0;
  std::string name;
  uint32_t flags = 0;
};

/// S→C, a group with its members (answers group_create and group_get).
struct group_info {
  static constexpr frame_type type = frame_type::group_info;
  uint64_t req = 0;
  uint32_t group_id = 0;
  std::string name;
  uint32_t flags = 0;
  std::string owner;
  std::vector<member> members;
};

/// S→C, answers group_list.
struct group_list_page {
  static constexpr frame_type type = frame_type::group_list_page;
  uint64_t req = 0;
  std::vector<group_summary> groups;
};

/// S→C, a log record: something happened to a group the user belongs to.
struct group_event {
  static constexpr frame_type type = frame_type::group_event;
  uint64_t seq = 0;
  uint64_t ts_ms = 0;
  uint32_t group_id = 0;
  group_event_kind kind = group_event_kind::created;
  std::string actor; ///< Who did it.
  std::string name;  ///< Group name after the event.
  uint32_t flags = 0;
  std::vector<member> members; ///< Members concerned.
};

// -- file family
// ---------------------------------------------------------------------------

/// C→S, start (or resume, with `resume_file_id`) an upload.
struct upload_start {
  static constexpr frame_type type = frame_type::upload_start;
  uint64_t req = 0;
  std::string name;
  std::string mime;
  uint64_t size = 0;
  uint64_t resume_file_id = 0;
};

/// S→C, the upload may proceed from `offset`.
struct upload_ready {
  static constexpr frame_type type = frame_type::upload_ready;
  uint64_t req = 0;
  uint64_t file_id = 0;
  uint64_t offset = 0;
};

/// C→S, bytes of an upload at `offset`.
struct upload_chunk {
  static constexpr frame_type type = frame_type::upload_chunk;
  uint64_t file_id = 0;
  uint64_t offset = 0;
  std::string data; ///< At most max_chunk bytes.
};

/// C→S, all bytes are sent; `sha256` (32 raw bytes) checks them.
struct upload_commit {
  static constexpr frame_type type = frame_type::upload_commit;
  uint64_t req = 0;
  uint64_t file_id = 0;
  std::string sha256;
};

/// C→S, fetch a file from `offset` (resume); `max_bytes` 0 = to the end.
struct download_request {
  static constexpr frame_type type = frame_type::download_request;
  uint64_t req = 0;
  uint64_t file_id = 0;
  uint64_t offset = 0;
  uint64_t max_bytes = 0;
};

/// S→C, bytes of a download.
struct download_chunk {
  static constexpr frame_type type = frame_type::download_chunk;
  uint64_t req = 0;
  uint64_t file_id = 0;
  uint64_t offset = 0;
  uint64_t total = 0;
  bool last = false;
  std::string data;
};

// -- call family
// -------------------------------------------------------------------------------

/// Either direction, never stored: call signalling, relayed to the peer's
/// devices. C→S: `peer` is the callee or caller; S→C: the other party.
struct call {
  static constexpr frame_type type = frame_type::call;
  uint64_t call_id = 0;
  std::string peer;
  call_kind kind = call_kind::invite;
  bool video = false;
  uint8_t reason = 0;  ///< call_status value for hangup.
  uint8_t value = 0;   ///< mute/hold state.
  std::string payload; ///< Opaque SDP or ICE, at most max_signal bytes.
};

// -- admin family
// ---------------------------------------------------------------------------

/// A→S, create an app.
struct admin_app_add {
  static constexpr frame_type type = frame_type::admin_app_add;
  uint64_t req = 0;
  std::string app_id;
  std::string name;
};

/// A→S, delete an app with all its users, tokens, logs and groups.
struct admin_app_delete {
  static constexpr frame_type type = frame_type::admin_app_delete;
  uint64_t req = 0;
  std::string app_id;
};

/// A→S, create a user (or find it) and issue a token; answered by admin_token.
struct admin_user_add {
  static constexpr frame_type type = frame_type::admin_user_add;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
  std::string name;
  uint32_t token_ttl_s = 0; ///< 0 = server default.
};

/// A→S, disable or enable a user; disabling ends its sessions.
struct admin_user_disable {
  static constexpr frame_type type = frame_type::admin_user_disable;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
  bool disabled = true;
};

/// A→S, delete a user with its tokens and log.
struct admin_user_delete {
  static constexpr frame_type type = frame_type::admin_user_delete;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
};

/// A→S, issue another token for an existing user; answered by admin_token.
struct admin_token_add {
  static constexpr frame_type type = frame_type::admin_token_add;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
  uint32_t token_ttl_s = 0;
};

/// A→S, revoke one token, or every token of the user when `token` is empty.
struct admin_token_revoke {
  static constexpr frame_type type = frame_type::admin_token_revoke;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
  std::string token;
};

/// A→S, list apps, users, sessions or groups; answered by reply with a JSON
/// body. Pages by `after` (the last key of the previous page).
struct admin_list {
  static constexpr frame_type type = frame_type::admin_list;
  uint64_t req = 0;
  admin_list_kind what = admin_list_kind::apps;
  std::string app_id;
  std::string after;
  uint32_t limit = 0;
};

/// S→A, a new access token.
struct admin_token {
  static constexpr frame_type type = frame_type::admin_token;
  uint64_t req = 0;
  std::string app_id;
  std::string address;
  std::string token;
  uint64_t expires_at_ms = 0;
};

/// A→S, a server-originated message from `from` to a peer or a group.
struct admin_send {
  static constexpr frame_type type = frame_type::admin_send;
  uint64_t req = 0;
  std::string app_id;
  std::string from;
  std::string peer;
  uint32_t group_id = 0;
  uint32_t expiry_s = default_expiry_s;
  uint16_t kind = 0;
  std::string payload;
};

/// A→S, create (or find) up to max_users_add users and issue a token for
/// each, all in one transaction (one durable commit, not one per user);
/// answered by admin_tokens, or by reply when nothing was done.
struct admin_users_add {
  static constexpr frame_type type = frame_type::admin_users_add;
  uint64_t req = 0;
  std::string app_id;
  std::vector<std::string> addresses;
  uint32_t token_ttl_s = 0; ///< 0 = server default.
};

/// S→A, the tokens of an admin_users_add, in the order of its addresses.
struct admin_tokens {
  static constexpr frame_type type = frame_type::admin_tokens;
  uint64_t req = 0;
  std::string app_id;
  std::vector<token_grant> grants;
};

/// Any frame.
using frame = std::variant<
  hello, login_ok, login_failed, ping, pong, goodbye, server_error, reply,
  admin_hello, send, message, ack, status_update, read, presence,
  presence_subscribe, edit, retract, update, sync_request, sync_page,
  group_create, group_members, group_leave, group_delete, group_list, group_get,
  group_set, group_info, group_list_page, group_event, upload_start,
  upload_ready, upload_chunk, upload_commit, download_request, download_chunk,
  call, admin_app_add, admin_app_delete, admin_user_add, admin_user_disable,
  admin_user_delete, admin_token_add, admin_token_revoke, admin_list,
  admin_token, admin_send, admin_users_add, admin_tokens>;

/// The type byte of whatever `f` holds.
frame_type type_of(const frame& f) noexcept;

} // namespace parley::codec
