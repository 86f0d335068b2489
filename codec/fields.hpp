#pragma once

// The fields of every frame in wire order, as one function template per
// struct (CAF's inspect() is the model). The sizer, the writer and the reader
// in codec.cpp all walk these lists, so encoding and decoding cannot disagree.
//
// A visitor V provides:
//   bool operator()(T& x)             integers, bools and enums, fixed width LE
//   bool str(std::string&, size_t max)   u16 length + bytes
//   bool blob(std::string&, size_t max)  u32 length + bytes
//   bool magic()                      the u32 hello_magic
//   bool opt(std::optional<T>&)       u8 0/1, then T
//   bool list(std::vector<T>&, size_t max)  u16 count, then each T
// and returns false to stop at the first error.
//
// Internal header: included by codec.cpp and by the actors' CAF inspectors.

#include "codec/frames.hpp"

namespace parley::codec {

// -- enum validity: a decoder refuses values the protocol does not define
// ---------

constexpr bool valid(status_code x) noexcept {
  return static_cast<uint8_t>(x) <= static_cast<uint8_t>(status_code::internal);
}

constexpr bool valid(message_status x) noexcept {
  switch (x) {
  case message_status::outbox:
  case message_status::sent:
  case message_status::delivered:
  case message_status::read:
  case message_status::received_new:
  case message_status::received_read:
  case message_status::call_missed:
  case message_status::call_incoming:
  case message_status::call_outgoing:
  case message_status::custom:
  case message_status::deleted:
  case message_status::wiped:
  case message_status::e2e:
  case message_status::fail:
  case message_status::user_offline:
  case message_status::inbox_full:
  case message_status::invalid_dest:
  case message_status::expired:
  case message_status::blocked:
  case message_status::rejected:
  case message_status::rate_limited:
  case message_status::group_paused:
  case message_status::not_member:
    return true;
  }
  return false;
}

constexpr bool valid(login_failure_reason x) noexcept {
  auto v = static_cast<uint8_t>(x);
  return v >= 1 && v <= 13;
}

constexpr bool valid(goodbye_reason x) noexcept {
  switch (x) {
  case goodbye_reason::normal:
  case goodbye_reason::signout:
  case goodbye_reason::auth_revoked:
  case goodbye_reason::idle:
  case goodbye_reason::protocol_error:
  case goodbye_reason::rate_limited:
  case goodbye_reason::shutdown:
  case goodbye_reason::deleted:
    return true;
  }
  return false;
}

constexpr bool valid(presence_kind x) noexcept {
  auto v = static_cast<uint8_t>(x);
  return (v >= 1 && v <= 5) || v == 10 || v == 11;
}

constexpr bool valid(member_op x) noexcept {
  return x == member_op::add || x == member_op::remove;
}

constexpr bool valid(group_event_kind x) noexcept {
  auto v = static_cast<uint8_t>(x);
  return v >= 1 && v <= 6;
}

constexpr bool valid(update_kind x) noexcept {
  return x == update_kind::edit || x == update_kind::retract;
}

constexpr bool valid(call_kind x) noexcept {
  auto v = static_cast<uint8_t>(x);
  return v >= 1 && v <= 7;
}

constexpr bool valid(admin_list_kind x) noexcept {
  auto v = static_cast<uint8_t>(x);
  return v >= 1 && v <= 4;
}

// -- shared parts
// -------------------------------------------------------------------

template<class V>
bool fields(V& v, file_ref& x) {
  return v(x.file_id) && v(x.size) && v.str(x.name, max_name) &&
         v.str(x.mime, max_name) && v.blob(x.thumbnail, max_thumbnail) &&
         v.str(x.url, max_text);
}

template<class V>
bool fields(V& v, member& x) {
  return v.str(x.address, max_address) && v(x.flags);
}

template<class V>
bool fields(V& v, group_summary& x) {
  return v(x.group_id) && v.str(x.name, max_name) && v(x.flags) &&
         v(x.my_flags);
}

// -- session family
// -------------------------------------------------------------------

template<class V>
bool fields(V& v, hello& x) {
  return v.magic() && v(x.version) && v.str(x.app_id, max_app_id) &&
         v.str(x.token, max_token) && v.str(x.device_id, max_device_id) &&
         v.str(x.client, max_name) && v(x.window);
}

template<class V>
bool fields(V& v, login_ok& x) {
  return v.str(x.address, max_address) && v(x.server_time_ms) &&
         v(x.head_seq) && v(x.cursor) && v(x.max_frame) &&
         v(x.ping_interval_s) && v(x.window) && v.str(x.server, max_name);
}

template<class V>
bool fields(V& v, login_failed& x) {
  return v(x.reason) && v.str(x.text, max_text);
}

template<class V>
bool fields(V& v, ping& x) {
  return v(x.nonce);
}

template<class V>
bool fields(V& v, pong& x) {
  return v(x.nonce);
}

template<class V>
bool fields(V& v, goodbye& x) {
  return v(x.reason) && v.str(x.text, max_text);
}

template<class V>
bool fields(V& v, server_error& x) {
  return v(x.code) && v(x.ref) && v.str(x.text, max_text);
}

template<class V>
bool fields(V& v, reply& x) {
  return v(x.req) && v(x.code) && v.str(x.text, max_text) &&
         v.blob(x.body, max_payload);
}

template<class V>
bool fields(V& v, admin_hello& x) {
  return v.magic() && v(x.version) && v.str(x.key, max_token);
}

// -- message family
// ---------------------------------------------------------------------

template<class V>
bool fields(V& v, send& x) {
  return v(x.mid) && v.str(x.peer, max_address) && v(x.group_id) &&
         v(x.flags) && v(x.expiry_s) && v(x.kind) && v(x.in_reply_to) &&
         v.blob(x.payload, max_payload) && v.opt(x.file);
}

template<class V>
bool fields(V& v, message& x) {
  return v(x.seq) && v(x.ts_ms) && v.str(x.sender, max_address) &&
         v.str(x.peer, max_address) && v(x.group_id) && v(x.mid) &&
         v(x.flags) && v(x.kind) && v(x.in_reply_to) && v(x.outgoing) &&
         v.blob(x.payload, max_payload) && v.opt(x.file);
}

template<class V>
bool fields(V& v, ack& x) {
  return v(x.seq);
}

template<class V>
bool fields(V& v, status_update& x) {
  return v(x.seq) && v(x.mid) && v.str(x.peer, max_address) && v(x.group_id) &&
         v.str(x.member, max_address) && v(x.value) && v(x.ts_ms) &&
         v.str(x.text, max_text) && v(x.receivers);
}

template<class V>
bool fields(V& v, read& x) {
  return v.str(x.peer, max_address) && v(x.group_id) && v(x.up_to_seq);
}

// -- presence family
// ----------------------------------------------------------------------

template<class V>
bool fields(V& v, presence& x) {
  return v.str(x.peer, max_address) && v(x.group_id) && v(x.kind) && v(x.ts_ms);
}

template<class V>
bool fields(V& v, presence_subscribe& x) {
  return v(x.subscribe) && v.list(x.peers, max_list);
}

// -- changes family
// -----------------------------------------------------------------------

template<class V>
bool fields(V& v, edit& x) {
  return v(x.req) && v(x.mid) && v.blob(x.payload, max_payload);
}

template<class V>
bool fields(V& v, retract& x) {
  return v(x.req) && v(x.mid);
}

template<class V>
bool fields(V& v, update& x) {
  return v(x.seq) && v(x.ts_ms) && v.str(x.sender, max_address) &&
         v.str(x.peer, max_address) && v(x.group_id) && v(x.mid) && v(x.kind) &&
         v.blob(x.payload, max_payload);
}

template<class V>
bool fields(V& v, sync_request& x) {
  return v(x.req) && v.str(x.peer, max_address) && v(x.group_id) &&
         v(x.before_seq) && v(x.count);
}

template<class V>
bool fields(V& v, sync_page& x) {
  return v(x.req) && v(x.complete) && v(x.resume_before) &&
         v.list(x.messages, max_list);
}

// -- group family
// ---------------------------------------------------------------------------

template<class V>
bool fields(V& v, group_create& x) {
  return v(x.req) && v.str(x.name, max_name) && v(x.flags) &&
         v.list(x.members, max_list);
}

template<class V>
bool fields(V& v, group_members& x) {
  return v(x.req) && v(x.group_id) && v(x.op) && v.list(x.members, max_list);
}

template<class V>
bool fields(V& v, group_leave& x) {
  return v(x.req) && v(x.group_id);
}

template<class V>
bool fields(V& v, group_delete& x) {
  return v(x.req) && v(x.group_id);
}

template<class V>
bool fields(V& v, group_list& x) {
  return v(x.req);
}

template<class V>
bool fields(V& v, group_get& x) {
  return v(x.req) && v(x.group_id);
}

template<class V>
bool fields(V& v, group_set& x) {
  return v(x.req) && v(x.group_id) && v.str(x.name, max_name) && v(x.flags);
}

template<class V>
bool fields(V& v, group_info& x) {
  return v(x.req) && v(x.group_id) && v.str(x.name, max_name) && v(x.flags) &&
         v.str(x.owner, max_address) && v.list(x.members, max_list);
}

template<class V>
bool fields(V& v, group_list_page& x) {
  return v(x.req) && v.list(x.groups, max_list);
}

template<class V>
bool fields(V& v, group_event& x) {
  return v(x.seq) && v(x.ts_ms) && v(x.group_id) && v(x.kind) &&
         v.str(x.actor, max_address) && v.str(x.name, max_name) && v(x.flags) &&
         v.list(x.members, max_list);
}

// -- file family
// ---------------------------------------------------------------------------

template<class V>
bool fields(V& v, upload_start& x) {
  return v(x.req) && v.str(x.name, max_name) && v.str(x.mime, max_name) &&
         v(x.size) && v(x.resume_file_id);
}

template<class V>
bool fields(V& v, upload_ready& x) {
  return v(x.req) && v(x.file_id) && v(x.offset);
}

template<class V>
bool fields(V& v, upload_chunk& x) {
  return v(x.file_id) && v(x.offset) && v.blob(x.data, max_chunk);
}

template<class V>
bool fields(V& v, upload_commit& x) {
  return v(x.req) && v(x.file_id) && v.str(x.sha256, 32);
}

template<class V>
bool fields(V& v, download_request& x) {
  return v(x.req) && v(x.file_id) && v(x.offset) && v(x.max_bytes);
}

template<class V>
bool fields(V& v, download_chunk& x) {
  return v(x.req) && v(x.file_id) && v(x.offset) && v(x.total) && v(x.last) &&
         v.blob(x.data, max_chunk);
}

// -- call family
// -----------------------------------------------------------------------------

template<class V>
bool fields(V& v, call& x) {
  return v(x.call_id) && v.str(x.peer, max_address) && v(x.kind) &&
         v(x.video) && v(x.reason) && v(x.value) &&
         v.blob(x.payload, max_signal);
}

// -- admin family
// ---------------------------------------------------------------------------

template<class V>
bool fields(V& v, admin_app_add& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) && v.str(x.name, max_name);
}

template<class V>
bool fields(V& v, admin_app_delete& x) {
  return v(x.req) && v.str(x.app_id, max_app_id);
}

template<class V>
bool fields(V& v, admin_user_add& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address) && v.str(x.name, max_name) &&
         v(x.token_ttl_s);
}

template<class V>
bool fields(V& v, token_grant& x) {
  return v.str(x.address, max_address) && v.str(x.token, max_token) &&
         v(x.expires_at_ms);
}

template<class V>
bool fields(V& v, admin_users_add& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.list(x.addresses, max_users_add) && v(x.token_ttl_s);
}

template<class V>
bool fields(V& v, admin_tokens& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.list(x.grants, max_users_add);
}

template<class V>
bool fields(V& v, admin_user_disable& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address) && v(x.disabled);
}

template<class V>
bool fields(V& v, admin_user_delete& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address);
}

template<class V>
bool fields(V& v, admin_token_add& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address) && v(x.token_ttl_s);
}

template<class V>
bool fields(V& v, admin_token_revoke& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address) && v.str(x.token, max_token);
}

template<class V>
bool fields(V& v, admin_list& x) {
  return v(x.req) && v(x.what) && v.str(x.app_id, max_app_id) &&
         v.str(x.after, max_name) && v(x.limit);
}

template<class V>
bool fields(V& v, admin_token& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.address, max_address) && v.str(x.token, max_token) &&
         v(x.expires_at_ms);
}

template<class V>
bool fields(V& v, admin_send& x) {
  return v(x.req) && v.str(x.app_id, max_app_id) &&
         v.str(x.from, max_address) && v.str(x.peer, max_address) &&
         v(x.group_id) && v(x.expiry_s) && v(x.kind) &&
         v.blob(x.payload, max_payload);
}

} // namespace parley::codec
