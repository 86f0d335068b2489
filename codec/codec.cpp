#include "codec/codec.hpp"

#include <array>
#include <utility>

namespace parley::codec {

namespace {

/// Known-type table, built from the frame variant so that adding a frame
/// to the variant is all it takes.
template<size_t... Is>
constexpr std::array<bool, 256> make_known(std::index_sequence<Is...>) {
  std::array<bool, 256> known{};
  ((known[static_cast<uint8_t>(std::variant_alternative_t<Is, frame>::type)] =
      true),
   ...);
  return known;
}

constexpr auto known_types =
  make_known(std::make_index_sequence<std::variant_size_v<frame>>{});

template<size_t I>
errc decode_as(const uint8_t* body, size_t len, frame& out) {
  if (out.index() != I)
    out.emplace<I>();
  return decode_body(body, len, std::get<I>(out));
}

template<size_t... Is>
errc decode_dispatch(frame_type t, const uint8_t* body, size_t len, frame& out,
                     std::index_sequence<Is...>) {
  errc result = errc::unknown_type;
  ((std::variant_alternative_t<Is, frame>::type == t
      ? (result = decode_as<Is>(body, len, out), true)
      : false) ||
   ...);
  return result;
}

} // namespace

bool is_known_frame_type(uint8_t t) noexcept {
  return known_types[t];
}

std::string_view to_string(frame_type t) noexcept {
  switch (t) {
  case frame_type::hello:
    return "hello";
  case frame_type::login_ok:
    return "login_ok";
  case frame_type::login_failed:
    return "login_failed";
  case frame_type::ping:
    return "ping";
  case frame_type::pong:
    return "pong";
  case frame_type::goodbye:
    return "goodbye";
  case frame_type::server_error:
    return "server_error";
  case frame_type::reply:
    return "reply";
  case frame_type::admin_hello:
    return "admin_hello";
  case frame_type::send:
    return "send";
  case frame_type::message:
    return "message";
  case frame_type::ack:
    return "ack";
  case frame_type::status_update:
    return "status_update";
  case frame_type::read:
    return "read";
  case frame_type::presence:
    return "presence";
  case frame_type::presence_subscribe:
    return "presence_subscribe";
  case frame_type::edit:
    return "edit";
  case frame_type::retract:
    return "retract";
  case frame_type::update:
    return "update";
  case frame_type::sync_request:
    return "sync_request";
  case frame_type::sync_page:
    return "sync_page";
  case frame_type::group_create:
    return "group_create";
  case frame_type::group_members:
    return "group_members";
  case frame_type::group_leave:
    return "group_leave";
  case frame_type::group_delete:
    return "group_delete";
  case frame_type::group_list:
    return "group_list";
  case frame_type::group_get:
    return "group_get";
  case frame_type::group_info:
    return "group_info";
  case frame_type::group_list_page:
    return "group_list_page";
  case frame_type::group_event:
    return "group_event";
  case frame_type::group_set:
    return "group_set";
  case frame_type::upload_start:
    return "upload_start";
  case frame_type::upload_ready:
    return "upload_ready";
  case frame_type::upload_chunk:
    return "upload_chunk";
  case frame_type::upload_commit:
    return "upload_commit";
  case frame_type::download_request:
    return "download_request";
  case frame_type::download_chunk:
    return "download_chunk";
  case frame_type::call:
    return "call";
  case frame_type::admin_app_add:
    return "admin_app_add";
  case frame_type::admin_app_delete:
    return "admin_app_delete";
  case frame_type::admin_user_add:
    return "admin_user_add";
  case frame_type::admin_user_disable:
    return "admin_user_disable";
  case frame_type::admin_user_delete:
    return "admin_user_delete";
  case frame_type::admin_token_add:
    return "admin_token_add";
  case frame_type::admin_token_revoke:
    return "admin_token_revoke";
  case frame_type::admin_list:
    return "admin_list";
  case frame_type::admin_token:
    return "admin_token";
  case frame_type::admin_send:
    return "admin_send";
  case frame_type::admin_users_add:
    return "admin_users_add";
  case frame_type::admin_tokens:
    return "admin_tokens";
  }
  return "unknown";
}

std::string_view to_string(message_status s) noexcept {
  switch (s) {
  case message_status::outbox:
    return "outbox";
  case message_status::sent:
    return "sent";
  case message_status::delivered:
    return "delivered";
  case message_status::read:
    return "read";
  case message_status::received_new:
    return "received_new";
  case message_status::received_read:
    return "received_read";
  case message_status::call_missed:
    return "call_missed";
  case message_status::call_incoming:
    return "call_incoming";
  case message_status::call_outgoing:
    return "call_outgoing";
  case message_status::custom:
    return "custom";
  case message_status::deleted:
    return "deleted";
  case message_status::wiped:
    return "wiped";
  case message_status::e2e:
    return "e2e";
  case message_status::fail:
    return "fail";
  case message_status::user_offline:
    return "user_offline";
  case message_status::inbox_full:
    return "inbox_full";
  case message_status::invalid_dest:
    return "invalid_dest";
  case message_status::expired:
    return "expired";
  case message_status::blocked:
    return "blocked";
  case message_status::rejected:
    return "rejected";
  case message_status::rate_limited:
    return "rate_limited";
  case message_status::group_paused:
    return "group_paused";
  case message_status::not_member:
    return "not_member";
  }
  return "unknown";
}

std::string_view to_string(login_failure_reason r) noexcept {
  switch (r) {
  case login_failure_reason::unknown_token:
    return "unknown_token";
  case login_failure_reason::other_app:
    return "other_app";
  case login_failure_reason::expired:
    return "expired";
  case login_failure_reason::revoked:
    return "revoked";
  case login_failure_reason::user_disabled:
    return "user_disabled";
  case login_failure_reason::unknown_app:
    return "unknown_app";
  case login_failure_reason::unsupported_version:
    return "unsupported_version";
  case login_failure_reason::bad_request:
    return "bad_request";
  case login_failure_reason::rate_limited:
    return "rate_limited";
  case login_failure_reason::bad_admin_key:
    return "bad_admin_key";
  case login_failure_reason::unavailable:
    return "unavailable";
  case login_failure_reason::rejected:
    return "rejected";
  case login_failure_reason::missing_device:
    return "missing_device";
  }
  return "unknown";
}

std::string_view to_string(goodbye_reason r) noexcept {
  switch (r) {
  case goodbye_reason::normal:
    return "normal";
  case goodbye_reason::signout:
    return "signout";
  case goodbye_reason::auth_revoked:
    return "auth_revoked";
  case goodbye_reason::idle:
    return "idle";
  case goodbye_reason::protocol_error:
    return "protocol_error";
  case goodbye_reason::rate_limited:
    return "rate_limited";
  case goodbye_reason::shutdown:
    return "shutdown";
  case goodbye_reason::deleted:
    return "deleted";
  }
  return "unknown";
}

std::string_view to_string(errc e) noexcept {
  switch (e) {
  case errc::ok:
    return "ok";
  case errc::truncated:
    return "truncated";
  case errc::frame_too_large:
    return "frame_too_large";
  case errc::unknown_type:
    return "unknown_type";
  case errc::field_too_long:
    return "field_too_long";
  case errc::list_too_long:
    return "list_too_long";
  case errc::bad_magic:
    return "bad_magic";
  case errc::invalid_value:
    return "invalid_value";
  case errc::trailing_bytes:
    return "trailing_bytes";
  case errc::parser_failed:
    return "parser_failed";
  }
  return "unknown";
}

std::string_view describe(errc e) noexcept {
  switch (e) {
  case errc::ok:
    return "no error";
  case errc::truncated:
    return "a frame body ends inside a field; the peer sent a malformed "
           "frame";
  case errc::frame_too_large:
    return "a frame is larger than the limit in force; send smaller "
           "payloads (files go in chunks) or raise the server's max frame";
  case errc::unknown_type:
    return "a frame has a type this protocol version does not define; the "
           "peer speaks another protocol or sent garbage";
  case errc::field_too_long:
    return "a field exceeds its protocol limit (addresses and device ids "
           "64 bytes, payloads 256 KiB; see docs/PROTOCOL.md)";
  case errc::list_too_long:
    return "a list has more elements than the protocol allows (10000)";
  case errc::bad_magic:
    return "the first frame is not a Parley hello; is this client pointed "
           "at the right port?";
  case errc::invalid_value:
    return "a field holds a value the protocol does not define";
  case errc::trailing_bytes:
    return "a frame has bytes after its last field; the peer speaks "
           "another protocol version";
  case errc::parser_failed:
    return "the stream is unusable after an earlier error; reconnect";
  }
  return "unknown error";
}

parley::status to_status(errc e, std::string_view context) {
  if (e == errc::ok)
    return {};
  std::string msg;
  if (!context.empty()) {
    msg += context;
    msg += ": ";
  }
  msg += to_string(e);
  msg += " (";
  msg += describe(e);
  msg += ")";
  return parley::status{status_code::protocol_error, std::move(msg)};
}

errc encode(const frame& f, buffer& out, uint32_t max_body) {
  return std::visit([&](const auto& x) { return encode(x, out, max_body); }, f);
}

errc decode(frame_type t, const uint8_t* body, size_t len, frame& out) {
  return decode_dispatch(
    t, body, len, out, std::make_index_sequence<std::variant_size_v<frame>>{});
}

frame_type type_of(const frame& f) noexcept {
  return std::visit([](const auto& x) { return x.type; }, f);
}

} // namespace parley::codec
