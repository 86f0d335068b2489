// End-to-end tests of parleyd's engine: a real server (parley::server, the
// library parleyd wraps) on loopback with real TLS, spoken to with the codec
// over Parley's TLS client. Process-level tests (kill -9) live in
// tests/e2e/process_test.cpp.

#include "api/users_add.hpp"
#include "tests/support/server_fixture.hpp"

#include <parley/admin.hpp>

#include <doctest/doctest.h>

using namespace parley;
using namespace parley::test;
using codec::message_status;

TEST_CASE("login succeeds with a user's token") {
  fixture f;
  auto c = f.client();
  auto ok = c->login("demo", f.alice_token, "phone");
  CHECK(ok.address == "alice");
  CHECK(ok.head_seq == 0);
  CHECK(ok.max_frame == f.opts.max_frame);
  CHECK(ok.window > 0);
}

TEST_CASE("each login failure says why") {
  using lr = codec::login_failure_reason;
  fixture f;
  REQUIRE(f.srv->app_add("other").ok());
  auto other = f.srv->user_add("other", "carol");
  REQUIRE(other.ok());
  CHECK(failed_login(f, "demo", "pt_nonsense").reason == lr::unknown_token);
  CHECK(failed_login(f, "demo", other->token).reason == lr::other_app);
  CHECK(failed_login(f, "nope", f.alice_token).reason == lr::unknown_app);
  CHECK(failed_login(f, "demo", f.alice_token, "").reason ==
        lr::missing_device);
  CHECK(failed_login(f, "demo", f.alice_token, "d1", 99).reason ==
        lr::unsupported_version);
  // Version 1 (never released) is below min_protocol_version.
  CHECK(failed_login(f, "demo", f.alice_token, "d1", 1).reason ==
        lr::unsupported_version);
  REQUIRE(f.srv->token_revoke("demo", "bob", f.bob_token).ok());
  CHECK(failed_login(f, "demo", f.bob_token).reason == lr::revoked);
  auto dave = f.user("dave");
  REQUIRE(f.srv->user_disable("demo", "dave").ok());
  auto bad = failed_login(f, "demo", dave);
  CHECK(bad.reason == lr::user_disabled);
  REQUIRE(f.srv->user_disable("demo", "dave", false).ok());
  auto c = f.client();
  CHECK(c->login("demo", dave, "d1").address == "dave");
}

TEST_CASE("the first frame must be a hello") {
  fixture f;
  auto c = f.client();
  c->send(codec::ping{1});
  auto bye = c->expect<codec::goodbye>();
  CHECK(bye.reason == codec::goodbye_reason::protocol_error);
  CHECK(c->wait_closed());
}

TEST_CASE("1:1 online: SENT, delivery, DELIVERED, READ in order") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto b = f.login(f.bob_token, "b1");
  a->send(text(100, "bob", "hello bob"));
  // SENT is alice's own log record of it (a compact status_update, seq 1,
  // to acknowledge): it leaves with what the answer would say, so there is
  // no separate answer (seq 0).
  auto sent = a->expect<codec::status_update>();
  CHECK(sent.mid == 100);
  CHECK(sent.value == message_status::sent);
  CHECK(sent.seq == 1);
  CHECK(sent.peer == "bob");
  CHECK(sent.ts_ms != 0);
  auto m = b->expect<codec::message>();
  CHECK(m.sender == "alice");
  CHECK(m.peer == "alice");
  CHECK(m.payload == "hello bob");
  CHECK(m.mid == 100);
  CHECK(m.seq == 1);
  CHECK(!m.outgoing);
  b->send(codec::ack{m.seq});
  // Then the DELIVERED receipt (seq 2), to acknowledge too.
  auto delivered = a->expect<codec::status_update>();
  CHECK(delivered.value == message_status::delivered);
  CHECK(delivered.mid == 100);
  CHECK(delivered.peer == "bob");
  CHECK(delivered.seq == 2);
  a->send(codec::ack{2});
  b->send(codec::read{"alice", 0, m.seq});
  auto read = a->expect<codec::status_update>();
  CHECK(read.value == message_status::read);
  CHECK(read.mid == 100);
  CHECK(read.seq == 3);
}

TEST_CASE("a device's window: what is beyond it follows the device's acks") {
  // bob's log is read empty at login and streamed from each batch after
  // that; records held back by the window must still follow his acks.
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto b = f.login(f.bob_token, "b1", 2);
  a->send(text(1, "bob", "m1", 0));
  CHECK(answer(*a, 1).value == message_status::sent);
  CHECK(b->expect<codec::message>().seq == 1);
  b->send(codec::ack{1});
  for (uint64_t i = 2; i <= 7; ++i) {
    a->send(text(i, "bob", "m" + std::to_string(i), 0));
    CHECK(answer(*a, i).value == message_status::sent);
  }
  for (uint64_t i = 2; i <= 7; i += 2) {
    auto m1 = b->expect<codec::message>();
    auto m2 = b->expect<codec::message>();
    CHECK(m1.seq == i);
    CHECK(m2.seq == i + 1);
    CHECK(m2.payload == "m" + std::to_string(i + 1));
    b->send(codec::ack{m2.seq});
  }
}

TEST_CASE("offline receiver gets messages in order when it logs in") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  for (uint64_t i = 1; i <= 20; ++i) {
    a->send(text(i, "bob", "m" + std::to_string(i)));
    CHECK(answer(*a, i).value == message_status::sent);
  }
  auto b = f.login(f.bob_token, "b1");
  for (uint64_t i = 1; i <= 20; ++i) {
    auto m = b->expect<codec::message>();
    CHECK(m.seq == i);
    CHECK(m.payload == "m" + std::to_string(i));
  }
}

TEST_CASE("receipts reach a sender that was offline meanwhile") {
  fixture f;
  {
    auto a = f.login(f.alice_token, "a1");
    a->send(text(7, "bob", "are you there?"));
    auto sent = answer(*a, 7); // the own record, seq 1
    CHECK(sent.value == message_status::sent);
    CHECK(sent.seq == 1);
    a->send(codec::ack{1});
    a->barrier();
    f.settle(); // the ack is stored before alice logs in again
  }
  auto b = f.login(f.bob_token, "b1");
  auto m = b->expect<codec::message>();
  b->send(codec::ack{m.seq});
  b->send(codec::read{"alice", 0, m.seq});
  b->barrier();
  auto a = f.login(f.alice_token, "a1");
  auto d = a->expect<codec::status_update>();
  CHECK(d.value == message_status::delivered);
  CHECK(d.mid == 7);
  auto r = a->expect<codec::status_update>();
  CHECK(r.value == message_status::read);
  CHECK(r.mid == 7);
}

TEST_CASE("USEROFFLINE, INVALIDDEST and INBOXFULL") {
  fixture f{nullptr, [](server_options& o) { o.inbox_quota = 2; }};
  auto a = f.login(f.alice_token, "a1");
  SUBCASE("expiry 0 to an offline user is USEROFFLINE") {
    auto s = text(1, "bob", "now or never");
    s.expiry_s = 0;
    a->send(s);
    auto st = a->expect<codec::status_update>();
    CHECK(st.value == message_status::user_offline);
    CHECK(!st.text.empty());
  }
  SUBCASE("expiry 0 to an online user is delivered, not stored") {
    auto b = f.login(f.bob_token, "b1");
    auto s = text(1, "bob", "now");
    s.expiry_s = 0;
    a->send(s);
    CHECK(a->expect<codec::status_update>().value == message_status::sent);
    auto m = b->expect<codec::message>();
    CHECK(m.seq == 0);
    CHECK(m.payload == "now");
    b.reset();
    auto again = f.client();
    CHECK(again->login("demo", f.bob_token, "b2").head_seq == 0);
  }
  SUBCASE("an unknown receiver is INVALIDDEST") {
    a->send(text(1, "nobody", "hi"));
    auto st = a->expect<codec::status_update>();
    CHECK(st.value == message_status::invalid_dest);
    CHECK(st.text.find("nobody") != std::string::npos);
  }
  SUBCASE("over the quota is INBOXFULL") {
    a->send(text(1, "bob", "1"));
    CHECK(answer(*a, 1).value == message_status::sent);
    a->send(text(2, "bob", "2"));
    CHECK(answer(*a, 2).value == message_status::sent);
    a->send(text(3, "bob", "3"));
    auto st = answer(*a, 3);
    CHECK(st.value == message_status::inbox_full);
    CHECK(st.text.find("quota") != std::string::npos);
    // Once bob's device acknowledges, there is room again.
    auto b = f.login(f.bob_token, "b1");
    b->expect<codec::message>();
    b->send(codec::ack{b->expect<codec::message>().seq});
    b->barrier();
    a->send(text(4, "bob", "4"));
    CHECK(answer(*a, 4).value == message_status::sent);
  }
}

TEST_CASE("a resent message is acknowledged again, never delivered twice") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto b = f.login(f.bob_token, "b1");
  a->send(text(42, "bob", "once"));
  CHECK(a->expect<codec::status_update>().value == message_status::sent);
  a->send(text(42, "bob", "once"));
  auto again = a->expect<codec::status_update>();
  CHECK(again.value == message_status::sent);
  CHECK(again.mid == 42);
  CHECK(b->expect<codec::message>().payload == "once");
  b->barrier();
  CHECK(b->queued() == 0);
}

TEST_CASE("two devices of one user both receive, and see what it sent") {
  fixture f;
  auto b1 = f.login(f.bob_token, "phone");
  auto b2 = f.login(f.bob_token, "laptop");
  auto a = f.login(f.alice_token, "a1");
  a->send(text(5, "bob", "to both"));
  CHECK(b1->expect<codec::message>().payload == "to both");
  CHECK(b2->expect<codec::message>().payload == "to both");
  // Bob answers from the phone: the laptop gets the outgoing copy.
  b1->send(text(6, "alice", "from phone"));
  CHECK(b1->expect<codec::status_update>().value == message_status::sent);
  auto copy = b2->expect<codec::message>();
  CHECK(copy.outgoing);
  CHECK(copy.peer == "alice");
  CHECK(copy.payload == "from phone");
}

TEST_CASE("a second login of the same device ends the first with SIGNOUT") {
  fixture f;
  auto first = f.login(f.alice_token, "phone");
  auto second = f.login(f.alice_token, "phone");
  auto bye = first->expect<codec::goodbye>();
  CHECK(bye.reason == codec::goodbye_reason::signout);
  CHECK(first->wait_closed());
  second->barrier(); // the new session is alive
}

TEST_CASE("revoking a token ends its live session at once") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto other = f.srv->user_add("demo", "alice");
  REQUIRE(other.ok());
  auto a2 = f.login(other->token, "a2");
  REQUIRE(f.srv->token_revoke("demo", "alice", f.alice_token).ok());
  auto bye = a->expect<codec::goodbye>();
  CHECK(bye.reason == codec::goodbye_reason::auth_revoked);
  CHECK(a->wait_closed());
  a2->barrier(); // the session of the other token lives on
}

TEST_CASE("disabling a user ends its sessions") {
  fixture f;
  auto b = f.login(f.bob_token, "b1");
  REQUIRE(f.srv->user_disable("demo", "bob").ok());
  CHECK(b->expect<codec::goodbye>().reason ==
        codec::goodbye_reason::auth_revoked);
  CHECK(b->wait_closed());
}

TEST_CASE("malformed frames close only that connection") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto b = f.login(f.bob_token, "b1");
  auto evil = f.client();
  evil->login("demo", f.user("mallory"), "m1");
  SUBCASE("unknown frame type") {
    evil->send_plain(codec::buffer{0xee, 1, 0, 0, 0});
  }
  SUBCASE("truncated body") {
    evil->send_plain(codec::buffer{0x12, 2, 0, 0, 1, 2}); // ack needs 8
  }
  SUBCASE("oversized length") {
    evil->send_plain(codec::buffer{0x10, 0xff, 0xff, 0xff});
  }
  SUBCASE("garbage below TLS") {
    evil->write_raw(tls::bytes(64, 0x17));
  }
  CHECK(evil->wait_closed());
  a->send(text(1, "bob", "still here"));
  CHECK(a->expect<codec::status_update>().value == message_status::sent);
  CHECK(b->expect<codec::message>().payload == "still here");
}

TEST_CASE("a message hook can refuse a message with a reason") {
  struct no_spam : server_hooks {
    verdict on_message(const message_event& ev) override {
      if (ev.payload != nullptr &&
          ev.payload->find("spam") != std::string::npos)
        return verdict::reject("no spam here");
      return verdict::ok();
    }
    verdict on_login(const login_event& ev) override {
      return ev.device == "banned" ? verdict::reject("device banned")
                                   : verdict::ok();
    }
  };
  fixture f{std::make_shared<no_spam>()};
  auto a = f.login(f.alice_token, "a1");
  a->send(text(1, "bob", "buy spam"));
  auto st = a->expect<codec::status_update>();
  CHECK(st.value == message_status::rejected);
  CHECK(st.text == "no spam here");
  a->send(text(2, "bob", "hello"));
  CHECK(a->expect<codec::status_update>().value == message_status::sent);
  auto bad = failed_login(f, "demo", f.bob_token, "banned");
  CHECK(bad.reason == codec::login_failure_reason::rejected);
  CHECK(bad.text == "device banned");
}

TEST_CASE("a message that got SENT survives a restart") {
  fixture f;
  {
    auto a = f.login(f.alice_token, "a1");
    a->send(text(9, "bob", "durable"));
    CHECK(a->expect<codec::status_update>().value == message_status::sent);
  }
  f.srv.reset(); // graceful stop
  f.start();
  auto b = f.login(f.bob_token, "b1");
  auto m = b->expect<codec::message>();
  CHECK(m.payload == "durable");
  CHECK(m.sender == "alice");
}

TEST_CASE("a stopping server says SHUTDOWN to every connection") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto adm = f.client();
  adm->send(codec::admin_hello{codec::protocol_version, f.srv->admin_key()});
  adm->expect<codec::login_ok>();
  auto idle = f.client(); // TLS done, no hello yet
  f.srv->stop();
  CHECK(a->expect<codec::goodbye>().reason == codec::goodbye_reason::shutdown);
  CHECK(a->wait_closed());
  CHECK(adm->expect<codec::goodbye>().reason ==
        codec::goodbye_reason::shutdown);
  CHECK(adm->wait_closed());
  CHECK(idle->wait_closed());
  f.srv->wait();
}

TEST_CASE("admin frames over the wire with the admin key") {
  fixture f;
  auto adm = f.client();
  adm->send(codec::admin_hello{codec::protocol_version, f.srv->admin_key()});
  CHECK(adm->expect<codec::login_ok>().address == "admin");
  adm->send(codec::admin_app_add{1, "chat", "Chat"});
  auto r = adm->expect<codec::reply>();
  CHECK(r.req == 1);
  CHECK(r.code == status_code::ok);
  adm->send(codec::admin_app_add{2, "chat", "Chat"});
  auto dup = adm->expect<codec::reply>();
  CHECK(dup.code == status_code::already_exists);
  adm->send(codec::admin_user_add{3, "chat", "zoe", "Zoe", 0});
  auto tok = adm->expect<codec::admin_token>();
  CHECK(tok.req == 3);
  CHECK(tok.address == "zoe");
  adm->send(codec::admin_list{4, codec::admin_list_kind::users, "chat", "", 0});
  auto list = adm->expect<codec::reply>();
  CHECK(list.body.find("\"zoe\"") != std::string::npos);
  auto z = f.client();
  CHECK(z->login("chat", tok.token, "z1").address == "zoe");
  // A wrong key is refused.
  auto bad = f.client();
  bad->send(codec::admin_hello{codec::protocol_version, "guess"});
  CHECK(bad->expect<codec::login_failed>().reason ==
        codec::login_failure_reason::bad_admin_key);
  // Users cannot send admin frames.
  auto u = f.login(f.alice_token, "a1");
  u->send(codec::admin_app_add{5, "x", ""});
  CHECK(u->expect<codec::server_error>().code ==
        status_code::failed_precondition);
}

TEST_CASE("admin users add: thousands of users, a thousand per commit") {
  fixture f;
  admin_options o;
  o.port = f.srv->port();
  o.admin_key = f.srv->admin_key();
  o.ca_file = f.srv->cert_file();
  auto adm = admin_client::connect(o);
  REQUIRE_MESSAGE(adm.ok(), adm.error().to_string());
  std::vector<std::string> names;
  for (int i = 0; i < 2500; ++i) // three frames: 1000, 1000, 500
    names.push_back("sim" + std::to_string(i));
  auto toks = (*adm)->users_add("demo", names);
  REQUIRE_MESSAGE(toks.ok(), toks.error().to_string());
  REQUIRE(toks->size() == names.size());
  for (size_t i : {size_t{0}, size_t{999}, size_t{1000}, size_t{2499}}) {
    CHECK((*toks)[i].address == names[i]);
    CHECK((*toks)[i].app_id == "demo");
    auto c = f.client();
    CHECK(c->login("demo", (*toks)[i].token, "d1").address == names[i]);
  }
  // In process, the same.
  auto local = f.srv->users_add("demo", {"p1", "p2"});
  REQUIRE_MESSAGE(local.ok(), local.error().to_string());
  REQUIRE(local->size() == 2);
  CHECK(f.client()->login("demo", (*local)[1].token, "d1").address == "p2");
  // A bad address anywhere, even in the second thousand, creates no one:
  // the whole list is checked before the first frame goes.
  names.clear();
  for (int i = 0; i < 1001; ++i)
    names.push_back("y" + std::to_string(i));
  names.push_back(""); // not an address
  auto bad = (*adm)->users_add("demo", names);
  REQUIRE(!bad.ok());
  CHECK(bad.error().code() == status_code::invalid_argument);
  CHECK(bad.error().message().find("(entry 1002)") != std::string::npos);
  auto listed = (*adm)->list(admin_list_what::users, "demo", {}, 10000);
  REQUIRE(listed.ok());
  CHECK(listed->find("\"y0\"") == std::string::npos);
  CHECK(listed->find("\"sim2499\"") != std::string::npos);
  // A repeat anywhere in the list is refused before anything is sent.
  auto twice = (*adm)->users_add("demo", {"w1", "w2", "w1"});
  REQUIRE(!twice.ok());
  CHECK(twice.error().message().find("'w1' is in the list twice") !=
        std::string::npos);
  // Over the wire: more than max_users_add in one frame is a protocol
  // error that closes the connection, a missing app a reply.
  auto raw = f.client();
  raw->send(codec::admin_hello{codec::protocol_version, f.srv->admin_key()});
  CHECK(raw->expect<codec::login_ok>().address == "admin");
  raw->send(codec::admin_users_add{7, "nope", {"a", "b"}, 0});
  auto r = raw->expect<codec::reply>();
  CHECK(r.req == 7);
  CHECK(r.code == status_code::not_found);
  codec::buffer big; // our encoder refuses it: the count is patched
  REQUIRE(codec::encode(codec::admin_users_add{8, "demo", {}, 0}, big) ==
          codec::errc::ok);
  auto count_at = big.size() - 4 - 2; // u16 count, then u32 token_ttl_s
  big[count_at] = (codec::max_users_add + 1) & 0xff;
  big[count_at + 1] = (codec::max_users_add + 1) >> 8;
  raw->send_plain(big);
  CHECK(raw->expect<codec::goodbye>().reason ==
        codec::goodbye_reason::protocol_error);
}

TEST_CASE("users add in chunks: a failure after the first says how many "
          "were created") {
  std::vector<std::string> names;
  for (int i = 0; i < 2100; ++i)
    names.push_back("n" + std::to_string(i));
  std::vector<size_t> sizes;
  // The server's side, played by hand: the third frame fails.
  auto call = [&](codec::admin_users_add f) -> result<codec::frame> {
    sizes.push_back(f.addresses.size());
    if (sizes.size() == 3)
      return status{status_code::unavailable, "connection lost"};
    codec::admin_tokens t;
    t.app_id = f.app_id;
    for (auto& a : f.addresses)
      t.grants.push_back(codec::token_grant{a, "pt_" + a, 0});
    return codec::frame{std::move(t)};
  };
  auto r = detail::users_add("demo", names, 0, call);
  REQUIRE(!r.ok());
  CHECK(r.error().code() == status_code::unavailable);
  CHECK(r.error().message().find("after the first 2000 users were created") !=
        std::string::npos);
  CHECK(sizes == std::vector<size_t>{1000, 1000, 100});
  // An answer without a token per user is the server's fault, not the
  // caller's.
  auto short_answer = [&](codec::admin_users_add f) -> result<codec::frame> {
    codec::admin_tokens t;
    t.app_id = f.app_id;
    t.grants.push_back(codec::token_grant{f.addresses[0], "pt_x", 0});
    return codec::frame{std::move(t)};
  };
  auto s = detail::users_add("demo", {"a", "b"}, 0, short_answer);
  REQUIRE(!s.ok());
  CHECK(s.error().code() == status_code::internal);
  // A repeat is refused before anything is sent.
  sizes.clear();
  auto twice = detail::users_add("demo", {"a", "b", "a"}, 0, call);
  REQUIRE(!twice.ok());
  CHECK(twice.error().code() == status_code::invalid_argument);
  CHECK(sizes.empty());
}

TEST_CASE("an expired token cannot log in") {
  fixture f;
  auto t = f.srv->user_add("demo", "eve", "", 60);
  REQUIRE(t.ok());
  f.advance(std::chrono::seconds(61));
  CHECK(failed_login(f, "demo", t->token).reason ==
        codec::login_failure_reason::expired);
}

TEST_CASE("a token that expires ends its live session") {
  fixture f;
  auto t = f.srv->user_add("demo", "eve", "", 1);
  REQUIRE(t.ok());
  auto c = f.login(t->token, "e1");
  auto bye = c->expect<codec::goodbye>(std::chrono::seconds(10));
  CHECK(bye.reason == codec::goodbye_reason::auth_revoked);
  CHECK(bye.text.find("expired") != std::string::npos);
  CHECK(c->wait_closed());
}

TEST_CASE("a message not delivered before its expiry is EXPIRED, not "
          "delivered") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto s = text(77, "bob", "soon stale");
  s.expiry_s = 60;
  a->send(s);
  CHECK(answer(*a, 77).value == message_status::sent);
  a->send(text(78, "bob", "fresh", 0)); // default expiry: 7 days
  CHECK(answer(*a, 78).value == message_status::sent);
  f.advance(std::chrono::seconds(61));
  auto b = f.login(f.bob_token, "b1");
  auto m = b->expect<codec::message>();
  CHECK(m.payload == "fresh"); // the stale one is skipped
  b->send(codec::ack{m.seq});
  b->barrier();
  CHECK(b->queued() == 0);
  for (;;) {
    auto st = a->expect<codec::status_update>();
    if (st.value == message_status::expired) {
      CHECK(st.mid == 77);
      CHECK(st.peer == "bob");
      CHECK(st.seq > 0); // a log record: reaches an offline sender too
      break;
    }
  }
  // A second device of bob skips it too, and no second EXPIRED is sent.
  auto b2 = f.login(f.bob_token, "b2");
  b2->barrier();
  a->barrier();
  while (a->queued() > 0) {
    auto st = a->expect<codec::status_update>();
    CHECK(st.value != message_status::expired);
    CHECK(!(st.mid == 77 && st.value == message_status::delivered));
  }
}

TEST_CASE("the window counts the records sent, not the expired ones "
          "skipped: a device that acks nothing still gets what follows") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  a->send(text(1, "bob", "first", 0));
  CHECK(answer(*a, 1).value == message_status::sent);
  for (uint64_t mid = 2; mid <= 6; ++mid) {
    auto s = text(mid, "bob", "stale");
    s.expiry_s = 60;
    a->send(s);
    CHECK(answer(*a, mid).value == message_status::sent);
  }
  a->send(text(7, "bob", "last", 0));
  CHECK(answer(*a, 7).value == message_status::sent);
  f.advance(std::chrono::seconds(61));
  // A window of 2: "first" is in flight, the five stale ones are skipped,
  // and "last" still fits. (A client that acks only at half its window
  // sees one record, and would otherwise wait with the server.)
  auto b = f.login(f.bob_token, "b1", 2);
  CHECK(b->expect<codec::message>().payload == "first");
  CHECK(b->expect<codec::message>().payload == "last");
}

TEST_CASE("EXPIRED reaches the sender even if the receiver never logs in") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto s = text(5, "bob", "lost in time", 0);
  s.expiry_s = 60;
  a->send(s);
  CHECK(answer(*a, 5).value == message_status::sent);
  f.advance(std::chrono::seconds(61));
  // The storage actor sweeps once a second (real time).
  for (;;) {
    auto st = a->expect<codec::status_update>(std::chrono::seconds(10));
    if (st.value == message_status::expired) {
      CHECK(st.mid == 5);
      break;
    }
  }
}

TEST_CASE("a message one device got in time reaches a late device after its "
          "expiry") {
  fixture f;
  {
    auto laptop = f.login(f.bob_token, "laptop"); // cursor 0, never acks
    laptop->barrier();
  }
  auto a = f.login(f.alice_token, "a1");
  auto s = text(6, "bob", "seen in time");
  s.expiry_s = 60;
  a->send(s);
  CHECK(answer(*a, 6).value == message_status::sent);
  {
    auto phone = f.login(f.bob_token, "phone");
    auto m = phone->expect<codec::message>();
    phone->send(codec::ack{m.seq});
    phone->barrier();
  }
  // The ack is on its way to the store; an admin call is answered only
  // after everything queued before it is committed.
  REQUIRE(f.srv->user_add("demo", "storage-barrier").ok());
  f.advance(std::chrono::seconds(61));
  auto laptop = f.login(f.bob_token, "laptop");
  CHECK(laptop->expect<codec::message>().payload == "seen in time");
  bool delivered = false;
  a->barrier();
  while (a->queued() > 0) {
    auto st = a->expect<codec::status_update>();
    CHECK(st.value != message_status::expired);
    delivered |= st.value == message_status::delivered;
  }
  CHECK(delivered);
}

TEST_CASE("a silent connection is closed after the idle timeout") {
  fixture f{nullptr, [](server_options& o) {
              o.idle_timeout_s = 1;
              o.ping_interval_s = 1;
            }};
  auto a = f.login(f.alice_token, "a1");
  auto bye = a->expect<codec::goodbye>(std::chrono::seconds(10));
  CHECK(bye.reason == codec::goodbye_reason::idle);
  CHECK(a->wait_closed());
}

TEST_CASE("a receiver that stops reading does not hold up the sender, and "
          "gets everything when it resumes") {
  fixture f;
  auto a = f.login(f.alice_token, "a1");
  auto b = f.login(f.bob_token, "b1", 64); // a window of 64 records
  const std::string big(4096, 'z');
  constexpr uint64_t n = 1000; // ~4 MiB: more than any buffer
  for (uint64_t i = 1; i <= n; ++i)
    a->send(text(i, "bob", big + std::to_string(i), 0));
  // Bob reads nothing meanwhile; alice gets every answer.
  for (uint64_t i = 1; i <= n; ++i)
    CHECK(answer(*a, i).value == message_status::sent);
  // Bob resumes: everything, in order, acked as it goes.
  for (uint64_t i = 1; i <= n; ++i) {
    auto m = b->expect<codec::message>();
    REQUIRE(m.seq == i);
    CHECK(m.payload == big + std::to_string(i));
    if (i % 32 == 0 || i == n)
      b->send(codec::ack{m.seq});
  }
  b->barrier();
  CHECK(b->queued() == 0);
}
