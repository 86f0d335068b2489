#pragma once

// Test oracle for the codec: one sample of every frame type with every field
// set to a value other than its default, and equality operators written from
// the struct definitions independently of codec/fields.hpp, so that a field
// the codec forgets to encode shows up as a mismatch.

#include "codec/frames.hpp"

#include <string>
#include <vector>

namespace parley::codec {

template<class T, class... Ms>
bool members_equal(const T& a, const T& b, Ms T::*... ms) {
  return ((a.*ms == b.*ms) && ...);
}

#define PARLEY_TEST_EQ(T, ...)                                                 \
  inline bool operator==(const T& a, const T& b) {                             \
    return members_equal(a, b, __VA_ARGS__);                                   \
  }                                                                            \
  inline bool operator!=(const T& a, const T& b) {                             \
    return !(a == b);                                                          \
  }

PARLEY_TEST_EQ(file_ref, &file_ref::file_id, &file_ref::size, &file_ref::name,
               &file_ref::mime, &file_ref::thumbnail, &file_ref::url)
PARLEY_TEST_EQ(member, &member::address, &member::flags)
PARLEY_TEST_EQ(token_grant, &token_grant::address, &token_grant::token,
               &token_grant::expires_at_ms)
PARLEY_TEST_EQ(group_summary, &group_summary::group_id, &group_summary::name,
               &group_summary::flags, &group_summary::my_flags)
PARLEY_TEST_EQ(hello, &hello::version, &hello::app_id, &hello::token,
               &hello::device_id, &hello::client, &hello::window)
PARLEY_TEST_EQ(login_ok, &login_ok::address, &login_ok::server_time_ms,
               &login_ok::head_seq, &login_ok::cursor, &login_ok::max_frame,
               &login_ok::ping_interval_s, &login_ok::window, &login_ok::server)
PARLEY_TEST_EQ(login_failed, &login_failed::reason, &login_failed::text)
PARLEY_TEST_EQ(ping, &ping::nonce)
PARLEY_TEST_EQ(pong, &pong::nonce)
PARLEY_TEST_EQ(goodbye, &goodbye::reason, &goodbye::text)
PARLEY_TEST_EQ(server_error, &server_error::code, &server_error::ref,
               &server_error::text)
PARLEY_TEST_EQ(reply, &reply::req, &reply::code, &reply::text, &reply::body)
PARLEY_TEST_EQ(admin_hello, &admin_hello::version, &admin_hello::key)
PARLEY_TEST_EQ(send, &send::mid, &send::peer, &send::group_id, &send::flags,
               &send::expiry_s, &send::kind, &send::in_reply_to, &send::payload,
               &send::file)
PARLEY_TEST_EQ(message, &message::seq, &message::ts_ms, &message::sender,
               &message::peer, &message::group_id, &message::mid,
               &message::flags, &message::kind, &message::in_reply_to,
               &message::outgoing, &message::payload, &message::file)
PARLEY_TEST_EQ(ack, &ack::seq)
PARLEY_TEST_EQ(status_update, &status_update::seq, &status_update::mid,
               &status_update::peer, &status_update::group_id,
               &status_update::member, &status_update::value,
               &status_update::ts_ms, &status_update::text)
PARLEY_TEST_EQ(read, &read::peer, &read::group_id, &read::up_to_seq)
PARLEY_TEST_EQ(presence, &presence::peer, &presence::group_id, &presence::kind,
               &presence::ts_ms)
PARLEY_TEST_EQ(presence_subscribe, &presence_subscribe::subscribe,
               &presence_subscribe::peers)
PARLEY_TEST_EQ(edit, &edit::req, &edit::mid, &edit::payload)
PARLEY_TEST_EQ(retract, &retract::req, &retract::mid)
PARLEY_TEST_EQ(update, &update::seq, &update::ts_ms, &update::sender,
               &update::peer, &update::group_id, &update::mid, &update::kind,
               &update::payload)
PARLEY_TEST_EQ(sync_request, &sync_request::req, &sync_request::peer,
               &sync_request::group_id, &sync_request::before_seq,
               &sync_request::count)
PARLEY_TEST_EQ(sync_page, &sync_page::req, &sync_page::complete,
               &sync_page::messages)
PARLEY_TEST_EQ(group_create, &group_create::req, &group_create::name,
               &group_create::flags, &group_create::members)
PARLEY_TEST_EQ(group_members, &group_members::req, &group_members::group_id,
               &group_members::op, &group_members::members)
PARLEY_TEST_EQ(group_leave, &group_leave::req, &group_leave::group_id)
PARLEY_TEST_EQ(group_delete, &group_delete::req, &group_delete::group_id)
PARLEY_TEST_EQ(group_list, &group_list::req)
PARLEY_TEST_EQ(group_get, &group_get::req, &group_get::group_id)
PARLEY_TEST_EQ(group_set, &group_set::req, &group_set::group_id,
               &group_set::name, &group_set::flags)
PARLEY_TEST_EQ(group_info, &group_info::req, &group_info::group_id,
               &group_info::name, &group_info::flags, &group_info::owner,
               &group_info::members)
PARLEY_TEST_EQ(group_list_page, &group_list_page::req, &group_list_page::groups)
PARLEY_TEST_EQ(group_event, &group_event::seq, &group_event::ts_ms,
               &group_event::group_id, &group_event::kind, &group_event::actor,
               &group_event::name, &group_event::flags, &group_event::members)
PARLEY_TEST_EQ(upload_start, &upload_start::req, &upload_start::name,
               &upload_start::mime, &upload_start::size,
               &upload_start::resume_file_id)
PARLEY_TEST_EQ(upload_ready, &upload_ready::req, &upload_ready::file_id,
               &upload_ready::offset)
PARLEY_TEST_EQ(upload_chunk, &upload_chunk::file_id, &upload_chunk::offset,
               &upload_chunk::data)
PARLEY_TEST_EQ(upload_commit, &upload_commit::req, &upload_commit::file_id,
               &upload_commit::sha256)
PARLEY_TEST_EQ(download_request, &download_request::req,
               &download_request::file_id, &download_request::offset,
               &download_request::max_bytes)
PARLEY_TEST_EQ(download_chunk, &download_chunk::req, &download_chunk::file_id,
               &download_chunk::offset, &download_chunk::total,
               &download_chunk::last, &download_chunk::data)
PARLEY_TEST_EQ(call, &call::call_id, &call::peer, &call::kind, &call::video,
               &call::reason, &call::value, &call::payload)
PARLEY_TEST_EQ(admin_app_add, &admin_app_add::req, &admin_app_add::app_id,
               &admin_app_add::name)
PARLEY_TEST_EQ(admin_app_delete, &admin_app_delete::req,
               &admin_app_delete::app_id)
PARLEY_TEST_EQ(admin_user_add, &admin_user_add::req, &admin_user_add::app_id,
               &admin_user_add::address, &admin_user_add::name,
               &admin_user_add::token_ttl_s)
PARLEY_TEST_EQ(admin_user_disable, &admin_user_disable::req,
               &admin_user_disable::app_id, &admin_user_disable::address,
               &admin_user_disable::disabled)
PARLEY_TEST_EQ(admin_user_delete, &admin_user_delete::req,
               &admin_user_delete::app_id, &admin_user_delete::address)
PARLEY_TEST_EQ(admin_token_add, &admin_token_add::req, &admin_token_add::app_id,
               &admin_token_add::address, &admin_token_add::token_ttl_s)
PARLEY_TEST_EQ(admin_token_revoke, &admin_token_revoke::req,
               &admin_token_revoke::app_id, &admin_token_revoke::address,
               &admin_token_revoke::token)
PARLEY_TEST_EQ(admin_list, &admin_list::req, &admin_list::what,
               &admin_list::app_id, &admin_list::after, &admin_list::limit)
PARLEY_TEST_EQ(admin_token, &admin_token::req, &admin_token::app_id,
               &admin_token::address, &admin_token::token,
               &admin_token::expires_at_ms)
PARLEY_TEST_EQ(admin_users_add, &admin_users_add::req, &admin_users_add::app_id,
               &admin_users_add::addresses, &admin_users_add::token_ttl_s)
PARLEY_TEST_EQ(admin_tokens, &admin_tokens::req, &admin_tokens::app_id,
               &admin_tokens::grants)
PARLEY_TEST_EQ(admin_send, &admin_send::req, &admin_send::app_id,
               &admin_send::from, &admin_send::peer, &admin_send::group_id,
               &admin_send::expiry_s, &admin_send::kind, &admin_send::payload)

#undef PARLEY_TEST_EQ

/// A 100-byte chat message, the frame the benchmarks use.
inline send sample_chat_send() {
  send x;
  x.mid = 0x0123456789abcdefull;
  x.peer = "bob@example.org";
  x.flags = message_flags::delivery_receipt;
  x.expiry_s = default_expiry_s;
  x.kind = 1;
  x.payload.assign(100, 'x');
  return x;
}

inline file_ref sample_file() {
  return file_ref{77,
                  123456,
                  "cat.jpg",
                  "image/jpeg",
                  std::string(16, '\x01'),
                  "https://files.example/cat.jpg"};
}

inline message sample_message(uint64_t seq) {
  message m;
  m.seq = seq;
  m.ts_ms = 1700000000000 + seq;
  m.sender = "alice";
  m.peer = "alice";
  m.group_id = 9;
  m.mid = 1000 + seq;
  m.flags = 3;
  m.kind = 4;
  m.in_reply_to = 55;
  m.outgoing = true;
  m.payload = "hello \xf0\x9f\x91\x8b";
  m.file = sample_file();
  return m;
}

/// One instance of every frame type, every field away from its default.
inline std::vector<frame> sample_frames() {
  std::vector<frame> out;
  out.emplace_back(hello{2, "demo", "tok-123", "dev-1", "parley-cli 0.1", 64});
  out.emplace_back(
    login_ok{"alice", 1700000000123, 99, 42, 1 << 20, 30, 64, "parleyd 0.1"});
  out.emplace_back(
    login_failed{login_failure_reason::expired, "token expired: ask again"});
  out.emplace_back(ping{0xdeadbeef});
  out.emplace_back(pong{0xfeedface});
  out.emplace_back(goodbye{goodbye_reason::signout, "replaced"});
  out.emplace_back(
    server_error{status_code::resource_exhausted, 17, "disk full"});
  out.emplace_back(reply{18, status_code::not_found, "no such app", "{}"});
  out.emplace_back(admin_hello{3, "admin-key"});
  {
    auto s = sample_chat_send();
    s.group_id = 5;
    s.in_reply_to = 8;
    s.file = sample_file();
    out.emplace_back(std::move(s));
  }
  out.emplace_back(sample_message(7));
  out.emplace_back(ack{123456789});
  out.emplace_back(status_update{11, 12, "bob", 13, "carol",
                                 message_status::delivered, 14, "ok", 15});
  out.emplace_back(read{"bob", 3, 77});
  out.emplace_back(presence{"bob", 4, presence_kind::typing, 99});
  out.emplace_back(presence_subscribe{false, {"bob", "carol", ""}});
  out.emplace_back(edit{1, 2, "new text"});
  out.emplace_back(retract{3, 4});
  out.emplace_back(
    update{5, 6, "alice", "bob", 7, 8, update_kind::retract, "x"});
  out.emplace_back(sync_request{9, "bob", 10, 11, 12});
  out.emplace_back(sync_page{13, true, 77, {sample_message(1), sample_message(2)}});
  out.emplace_back(
    group_create{14,
                 "friends",
                 group_flags::send_by_anyone,
                 {{"bob", member_flags::send | member_flags::recv},
                  {"carol", member_flags::admin}}});
  out.emplace_back(
    group_members{15, 16, member_op::remove, {{"bob", 1}, {"dave", 2}}});
  out.emplace_back(group_leave{17, 18});
  out.emplace_back(group_delete{19, 20});
  out.emplace_back(group_list{21});
  out.emplace_back(group_get{22, 23});
  out.emplace_back(group_set{24, 25, "renamed", 2});
  out.emplace_back(group_info{26, 27, "friends", 2, "alice", {{"bob", 3}}});
  out.emplace_back(group_list_page{28, {{1, "a", 2, 3}, {4, "b", 5, 0x1000}}});
  out.emplace_back(group_event{29,
                               30,
                               31,
                               group_event_kind::members_added,
                               "alice",
                               "friends",
                               2,
                               {{"bob", 3}}});
  out.emplace_back(upload_start{32, "cat.jpg", "image/jpeg", 1000, 33});
  out.emplace_back(upload_ready{34, 35, 36});
  out.emplace_back(upload_chunk{37, 38, std::string(1000, '\xab')});
  out.emplace_back(upload_commit{39, 40, std::string(32, '\x5a')});
  out.emplace_back(download_request{41, 42, 43, 44});
  out.emplace_back(download_chunk{45, 46, 47, 48, true, "abc"});
  out.emplace_back(
    call{49, "bob", call_kind::hangup, true, call_status::busy, 1, "v=0 sdp"});
  out.emplace_back(admin_app_add{50, "demo", "Demo app"});
  out.emplace_back(admin_app_delete{51, "demo"});
  out.emplace_back(admin_user_add{52, "demo", "alice", "Alice", 3600});
  out.emplace_back(admin_user_disable{53, "demo", "alice", true});
  out.emplace_back(admin_user_delete{54, "demo", "alice"});
  out.emplace_back(admin_token_add{55, "demo", "alice", 60});
  out.emplace_back(admin_token_revoke{56, "demo", "alice", "tok"});
  out.emplace_back(
    admin_list{57, admin_list_kind::users, "demo", "alice", 100});
  out.emplace_back(admin_token{58, "demo", "alice", "tok-xyz", 1800000000000});
  out.emplace_back(
    admin_send{59, "demo", "system", "alice", 60, 61, 62, "welcome"});
  out.emplace_back(admin_users_add{63, "demo", {"sim-0", "sim-1"}, 64});
  out.emplace_back(admin_tokens{
    65, "demo", {{"sim-0", "tok-0", 1800000000000}, {"sim-1", "tok-1", 0}}});
  return out;
}

} // namespace parley::codec
