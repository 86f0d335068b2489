#pragma once

// Wire-format constants of the Parley protocol. docs/PROTOCOL.md describes
// every frame byte by byte; this header is the single place the numbers live
// (LevelDB's db/log_format.h is the model). Changing a number here is a
// protocol change: bump `protocol_version` and document it.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace parley::codec {

/// Protocol version spoken by this code. A hello carrying a higher version is
/// refused with login_failure_reason::unsupported_version.
/// 2: status_update gained `receivers` (docs/PROTOCOL.md section 7).
constexpr uint16_t protocol_version = 2;

/// Oldest protocol version this code still accepts. Version 1 was never
/// released; this code does not speak it.
constexpr uint16_t min_protocol_version = 2;

/// The first four bytes of a hello body: "PRLY". Lets a server tell a Parley
/// client from garbage (or from an HTTP client on the wrong port) at once.
constexpr uint32_t hello_magic = 0x594c5250; // "PRLY" little-endian

/// Frame header: 1 byte type, 3 bytes body length (little-endian).
constexpr size_t header_size = 4;

/// Largest body length the header can express (16 MiB - 1).
constexpr uint32_t max_frame_body_protocol = (1u << 24) - 1;

/// Default limit on a frame body; configurable per connection, never above
/// `max_frame_body_protocol`.
constexpr uint32_t default_max_frame_body = 1u << 20; // 1 MiB

// -- identity limits (architecture: "Decisions already taken") ----------------

constexpr size_t max_app_id = 64;    ///< App id, UTF-8 bytes.
constexpr size_t max_address = 64;   ///< User address, UTF-8 bytes.
constexpr size_t max_device_id = 64; ///< Device id, bytes.
constexpr size_t max_token = 256;    ///< Access token or admin key, bytes.
constexpr size_t max_name = 256;     ///< Display names, file names, mime.
constexpr size_t max_text = 4096;    ///< Human-readable reasons.
constexpr size_t max_payload = 256 * 1024;  ///< Message payload, bytes.
constexpr size_t max_chunk = 256 * 1024;    ///< File chunk, bytes.
constexpr size_t max_signal = 64 * 1024;    ///< Call SDP/ICE payload, bytes.
constexpr size_t max_thumbnail = 64 * 1024; ///< File thumbnail, bytes.
constexpr size_t max_list = 10000;          ///< Elements of any list field.
/// Users one admin_users_add creates: its answer (about 110 bytes a user)
/// stays well inside the default largest frame.
constexpr size_t max_users_add = 1000;

// -- frame types
// ----------------------------------------------------------------

/// The first byte of every frame. Grouped by family in ranges of 16.
enum class frame_type : uint8_t {
  // session family
  hello = 0x01,
  login_ok = 0x02,
  login_failed = 0x03,
  ping = 0x04,
  pong = 0x05,
  goodbye = 0x06,
  server_error = 0x07,
  reply = 0x08,
  admin_hello = 0x09,
  // message family
  send = 0x10,
  message = 0x11,
  ack = 0x12,
  status_update = 0x13,
  read = 0x14,
  // presence family
  presence = 0x20,
  presence_subscribe = 0x21,
  // changes family
  edit = 0x28,
  retract = 0x29,
  update = 0x2a,
  sync_request = 0x2b,
  sync_page = 0x2c,
  // group family
  group_create = 0x30,
  group_members = 0x31,
  group_leave = 0x32,
  group_delete = 0x33,
  group_list = 0x34,
  group_get = 0x35,
  group_info = 0x36,
  group_list_page = 0x37,
  group_event = 0x38,
  group_set = 0x39,
  // file family
  upload_start = 0x40,
  upload_ready = 0x41,
  upload_chunk = 0x42,
  upload_commit = 0x43,
  download_request = 0x44,
  download_chunk = 0x45,
  // call family
  call = 0x50,
  // admin family
  admin_app_add = 0x60,
  admin_app_delete = 0x61,
  admin_user_add = 0x62,
  admin_user_disable = 0x63,
  admin_user_delete = 0x64,
  admin_token_add = 0x65,
  admin_token_revoke = 0x66,
  admin_list = 0x67,
  admin_token = 0x68,
  admin_send = 0x69,
  admin_users_add = 0x6a,
  admin_tokens = 0x6b,
};

/// True when `t` names a frame type of this protocol version.
bool is_known_frame_type(uint8_t t) noexcept;

/// Lower-case name of a frame type ("send"), or "unknown".
std::string_view to_string(frame_type t) noexcept;

// -- message status (Mesibo's numbers)
// -----------------------------------------

/// Status of an outgoing message as the sender sees it. Failures have 0x80.
enum class message_status : uint8_t {
  outbox = 0x00,
  sent = 0x01,
  delivered = 0x02,
  read = 0x03,
  received_new = 0x12,
  received_read = 0x13,
  call_missed = 0x15,
  call_incoming = 0x16,
  call_outgoing = 0x17,
  custom = 0x20,
  deleted = 0x21,
  wiped = 0x22,
  e2e = 0x23,
  fail = 0x80,
  user_offline = 0x81,
  inbox_full = 0x82,
  invalid_dest = 0x83,
  expired = 0x84,
  blocked = 0x88,
  rejected = 0x89, ///< Parley: refused by a server hook (reason in the text).
  rate_limited = 0x8a, ///< Parley: the sender sends faster than allowed.
  group_paused = 0x90,
  not_member = 0x91,
};

/// True for the failure statuses (bit 0x80).
constexpr bool is_failure(message_status s) noexcept {
  return (static_cast<uint8_t>(s) & 0x80) != 0;
}

/// Lower-case name of a message status ("delivered"), or "unknown".
std::string_view to_string(message_status s) noexcept;

// -- message flags (Mesibo's numbers)
// -------------------------------------------

namespace message_flags {
constexpr uint16_t delivery_receipt = 0x01;
constexpr uint16_t read_receipt = 0x02;
constexpr uint16_t transient = 0x04;
constexpr uint16_t presence = 0x08;
constexpr uint16_t broadcast = 0x20;
// Parley's: set by the server on a stored copy it changed (a sender's
// own bits here are cleared), and by the SDK on a forwarded copy.
constexpr uint16_t edited = 0x100;    ///< The payload was edited.
constexpr uint16_t retracted = 0x200; ///< Deleted for everyone (payload gone).
constexpr uint16_t forwarded = 0x400; ///< A copy of another message.
constexpr uint16_t server_owned = edited | retracted;
} // namespace message_flags

/// Default expiry of a message: 7 days.
constexpr uint32_t default_expiry_s = 7 * 24 * 3600;

// -- login and goodbye reasons
// ----------------------------------------------------

/// Why a login was refused. Every reason has a fixed explanation for users.
enum class login_failure_reason : uint8_t {
  unknown_token = 1,       ///< No such token in this app.
  other_app = 2,           ///< The token belongs to another app.
  expired = 3,             ///< The token expired.
  revoked = 4,             ///< The token was revoked.
  user_disabled = 5,       ///< The token's user is disabled.
  unknown_app = 6,         ///< No such app on this server.
  unsupported_version = 7, ///< The client speaks a protocol we do not.
  bad_request = 8,         ///< The hello frame was malformed.
  rate_limited = 9,        ///< Too many failed logins; wait and retry.
  bad_admin_key = 10,      ///< Admin login with a wrong key.
  unavailable = 11,        ///< The server is shutting down or overloaded.
  rejected = 12,           ///< Refused by the login hook (see the text).
  missing_device = 13,     ///< The hello carried no device id.
};

/// Lower-case name of a login failure reason, or "unknown".
std::string_view to_string(login_failure_reason r) noexcept;

/// Why a server ends a session. The numbers shared with connection statuses
/// use Mesibo's values (SIGNOUT 3, SHUTDOWN 22).
enum class goodbye_reason : uint8_t {
  normal = 0,          ///< The peer asked to close.
  signout = 3,         ///< Replaced by a new login of the same device.
  auth_revoked = 4,    ///< Token revoked, expired or user disabled meanwhile.
  idle = 30,           ///< No traffic within the idle timeout.
  protocol_error = 31, ///< The peer broke the protocol.
  rate_limited = 32,   ///< The peer sent faster than allowed.
  shutdown = 22,       ///< The server is stopping.
  deleted = 33,        ///< The user was deleted.
};

/// Lower-case name of a goodbye reason, or "unknown".
std::string_view to_string(goodbye_reason r) noexcept;

// -- presence (Mesibo's numbers; OFFLINE is Parley's)
// ------------------------------

enum class presence_kind : uint8_t {
  online = 1,
  online_response = 2,
  typing = 3,
  typing_cleared = 4,
  offline = 5,
  joined = 10,
  left = 11,
};

// -- groups (Mesibo's numbers)
// ------------------------------------------------------

namespace member_flags {
constexpr uint32_t send = 0x1;
constexpr uint32_t recv = 0x2;
constexpr uint32_t publish = 0x4;
constexpr uint32_t subscribe = 0x8;
constexpr uint32_t list = 0x10;
constexpr uint32_t admin = 0x1000;
} // namespace member_flags

namespace group_flags {
constexpr uint32_t send_by_selected = 0x1;
constexpr uint32_t send_by_anyone = 0x2;
constexpr uint32_t recv_round_robin = 0x20;
constexpr uint32_t no_storage = 0x40;
constexpr uint32_t recv_loopback = 0x80;
} // namespace group_flags

/// What a group_members frame does to the listed members.
enum class member_op : uint8_t {
  add = 1,    ///< Add, or update the flags of, the listed members.
  remove = 2, ///< Remove the listed members.
};

/// What happened to a group (group_event frames).
enum class group_event_kind : uint8_t {
  created = 1,
  members_added = 2,
  members_removed = 3,
  left = 4,
  settings_changed = 5,
  deleted = 6,
};

// -- changes
// --------------------------------------------------------------------------

/// What an update frame does to an earlier message.
enum class update_kind : uint8_t {
  edit = 1,    ///< Replace the payload.
  retract = 2, ///< Delete for everyone (Mesibo's "wipe").
};

/// Default retraction window: 3600 s.
constexpr uint32_t default_retract_window_s = 3600;

// -- calls (Mesibo's call status numbers, signalling kinds)
// ----------------------------

/// What a call frame carries.
enum class call_kind : uint8_t {
  invite = 1,  ///< Start a call; payload: SDP offer.
  ringing = 2, ///< The callee's device rings.
  answer = 3,  ///< The callee answers; payload: SDP answer.
  hangup = 4,  ///< Either side ends the call; `reason` says why.
  ice = 5,     ///< An ICE candidate; payload: candidate.
  mute = 6,    ///< Mute state changed; `value` 1 = muted.
  hold = 7,    ///< Hold state changed; `value` 1 = on hold.
};

/// Call status values (Mesibo's); below 0x40 the call is in progress.
namespace call_status {
constexpr uint8_t incoming = 0x01;
constexpr uint8_t in_progress = 0x02;
constexpr uint8_t ringing = 0x03;
constexpr uint8_t answer = 0x05;
constexpr uint8_t connected = 0x30;
constexpr uint8_t complete = 0x40;
constexpr uint8_t cancel = 0x41;
constexpr uint8_t no_answer = 0x42;
constexpr uint8_t busy = 0x43;
constexpr uint8_t unreachable = 0x44;
constexpr uint8_t offline = 0x45;
} // namespace call_status

// -- admin
// ------------------------------------------------------------------------------

/// What an admin_list frame lists.
enum class admin_list_kind : uint8_t {
  apps = 1,
  users = 2,
  sessions = 3,
  groups = 4,
};

} // namespace parley::codec
