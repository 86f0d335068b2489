// Issue 7: presence over the wire, against a live server (real TLS): typing
// and the like reach the peer (1:1) or the group's members and nobody else,
// are never stored, never overtake the message sent before them; online and
// offline reach the subscribers.
//
// "Nobody else got it" is checked without sleeping: once the intended
// receiver has the frame, the dispatcher has sent to every session it chose,
// so a barrier (ping/pong) at a bystander shows whatever it was sent.

#include "tests/support/server_fixture.hpp"

#include <doctest/doctest.h>

using namespace parley;
using namespace parley::test;
using codec::presence_kind;

namespace {

struct presence_fixture : fixture {
  std::string carol_token = user("carol");
};

codec::presence to_peer(const std::string& peer, presence_kind k) {
  return codec::presence{peer, 0, k, 0};
}

/// No presence frame is queued at `c` (after a barrier).
bool no_presence(test_client& c) {
  c.barrier();
  for (;;) {
    if (c.queued() == 0)
      return true;
    auto f = c.next();
    if (f && std::holds_alternative<codec::presence>(*f))
      return false;
  }
}

/// The next frame at `c` that is not a status update of its own messages.
codec::frame next_event(test_client& c) {
  for (;;) {
    auto f = c.next();
    REQUIRE(f.has_value());
    if (!std::holds_alternative<codec::status_update>(*f))
      return std::move(*f);
  }
}

} // namespace

TEST_CASE("presence: typing reaches the peer's devices, and nobody else") {
  presence_fixture f;
  auto alice1 = f.login(f.alice_token, "a1");
  auto alice2 = f.login(f.alice_token, "a2");
  auto bob = f.login(f.bob_token, "b1");
  auto carol = f.login(f.carol_token, "c1");
  bob->send(to_peer("alice", presence_kind::typing));
  for (auto* a : {alice1.get(), alice2.get()}) {
    auto p = a->expect<codec::presence>();
    CHECK(p.peer == "bob");
    CHECK(p.group_id == 0);
    CHECK(p.kind == presence_kind::typing);
    CHECK(p.ts_ms > 0);
  }
  CHECK(no_presence(*carol));
  CHECK(no_presence(*bob)); // not echoed to the sender
  bob->send(to_peer("alice", presence_kind::typing_cleared));
  CHECK(alice1->expect<codec::presence>().kind ==
        presence_kind::typing_cleared);
}

TEST_CASE("presence: never stored, so a device that was offline gets none") {
  presence_fixture f;
  auto bob = f.login(f.bob_token, "b1");
  bob->send(to_peer("alice", presence_kind::typing));
  bob->send(text(1, "alice", "after typing"));
  CHECK(answer(*bob, 1).value == codec::message_status::sent);
  auto alice = f.client();
  auto ok = alice->login("demo", f.alice_token, "a1");
  CHECK(ok.head_seq == 1); // alice's log holds the message alone
  auto m = alice->expect<codec::message>();
  CHECK(m.payload == "after typing");
  alice->send(codec::ack{m.seq});
  CHECK(no_presence(*alice));
}

TEST_CASE("presence: never overtakes the message sent before it") {
  presence_fixture f;
  auto alice = f.login(f.alice_token, "a1");
  auto bob = f.login(f.bob_token, "b1");
  for (uint64_t i = 1; i <= 20; ++i) {
    // No wait between the two: the message is still on its way to the
    // store when the presence arrives at the server.
    bob->send(text(i, "alice", "msg " + std::to_string(i)));
    bob->send(to_peer("alice", presence_kind::typing_cleared));
    auto first = next_event(*alice);
    auto* m = std::get_if<codec::message>(&first);
    REQUIRE_MESSAGE(m != nullptr, "presence arrived before message " << i);
    CHECK(m->payload == "msg " + std::to_string(i));
    alice->send(codec::ack{m->seq});
    auto second = next_event(*alice);
    REQUIRE(std::holds_alternative<codec::presence>(second));
  }
}

TEST_CASE("presence: to a group's members, not to outsiders; refusals say "
          "why") {
  presence_fixture f;
  auto dave_token = f.user("dave");
  auto alice = f.login(f.alice_token, "a1");
  auto bob = f.login(f.bob_token, "b1");
  auto carol = f.login(f.carol_token, "c1");
  auto dave = f.login(dave_token, "d1");
  codec::group_create gc;
  gc.req = 1;
  gc.name = "team";
  gc.members = {{"bob", 0}, {"carol", 0}};
  alice->send(gc);
  uint32_t gid = 0;
  for (;;) {
    auto fr = alice->next();
    REQUIRE(fr.has_value());
    if (auto* gi = std::get_if<codec::group_info>(&*fr)) {
      gid = gi->group_id;
      break;
    }
  }
  REQUIRE(gid != 0);
  alice->send(codec::presence{{}, gid, presence_kind::typing, 0});
  for (auto* c : {bob.get(), carol.get()}) {
    codec::presence p;
    for (;;) { // skip the group's created event
      auto fr = c->next();
      REQUIRE(fr.has_value());
      if (auto* x = std::get_if<codec::presence>(&*fr)) {
        p = *x;
        break;
      }
    }
    CHECK(p.peer == "alice");
    CHECK(p.group_id == gid);
    CHECK(p.kind == presence_kind::typing);
  }
  CHECK(no_presence(*dave));
  // dave is no member: refused, and nobody hears it.
  dave->send(codec::presence{{}, gid, presence_kind::typing, 0});
  auto err = dave->expect<codec::server_error>();
  CHECK(err.code == status_code::not_found);
  CHECK(err.text.find("not a member") != std::string::npos);
  CHECK(no_presence(*bob));
  // Offline is the server's to send; unknown users are named.
  bob->send(to_peer("alice", presence_kind::offline));
  err = bob->expect<codec::server_error>();
  CHECK(err.code == status_code::invalid_argument);
  bob->send(to_peer("nobody", presence_kind::typing));
  err = bob->expect<codec::server_error>();
  CHECK(err.text.find("nobody") != std::string::npos);
}

TEST_CASE("presence: subscribers learn online and offline, at once and at "
          "each change") {
  presence_fixture f;
  auto alice = f.login(f.alice_token, "a1");
  alice->send(codec::presence_subscribe{true, {"bob", "nobody"}});
  auto err = alice->expect<codec::server_error>();
  CHECK(err.text.find("'nobody'") != std::string::npos);
  auto p = alice->expect<codec::presence>();
  CHECK(p.peer == "bob");
  CHECK(p.kind == presence_kind::offline);
  auto bob1 = f.login(f.bob_token, "b1");
  CHECK(alice->expect<codec::presence>().kind == presence_kind::online);
  // A second device changes nothing; the last one leaving does. (bob1's
  // session unregistered before its socket closed, and bob2's message
  // reaches the dispatcher after that: an offline would come first.)
  auto bob2 = f.login(f.bob_token, "b2");
  bob1->send(codec::goodbye{});
  CHECK(bob1->wait_closed());
  bob2->send(text(1, "alice", "still here"));
  auto ev = next_event(*alice);
  REQUIRE(std::holds_alternative<codec::message>(ev));
  alice->send(codec::ack{std::get<codec::message>(ev).seq});
  bob2->send(codec::goodbye{});
  CHECK(bob2->wait_closed());
  p = alice->expect<codec::presence>();
  CHECK(p.peer == "bob");
  CHECK(p.kind == presence_kind::offline);
  // Unsubscribed: no more.
  alice->send(codec::presence_subscribe{false, {"bob"}});
  alice->barrier();
  auto bob3 = f.login(f.bob_token, "b3");
  bob3->send(text(2, "alice", "back")); // after bob3's registration
  ev = next_event(*alice);
  REQUIRE(std::holds_alternative<codec::message>(ev));
  CHECK(std::get<codec::message>(ev).payload == "back");
}
