// Issue 7: groups over the wire, against a live server (real TLS): changes
// answered or refused with a reason, group events in every member's log,
// fan-out to online and offline members in one order, NOTMEMBER, DELIVERED
// per member.

#include "tests/support/server_fixture.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace parley;
using namespace parley::test;
using codec::message_status;
namespace mf = codec::member_flags;

namespace {

struct group_fixture : fixture {
  std::string carol_token = user("carol");
  std::string dave_token = user("dave");
};

/// The next T at `c`, skipping the other frames a member gets meanwhile
/// (answers, own log copies, receipts, events, messages); a server_error
/// or goodbye fails the test.
template<class T>
T next_of(test_client& c) {
  for (;;) {
    auto f = c.next();
    REQUIRE(f.has_value());
    if (auto* x = std::get_if<T>(&*f))
      return std::move(*x);
    REQUIRE_MESSAGE(!std::holds_alternative<codec::server_error>(*f),
                    std::get<codec::server_error>(*f).text);
    REQUIRE(!std::holds_alternative<codec::goodbye>(*f));
  }
}

/// The immediate answer (seq 0) to message `mid` at `c`.
codec::status_update answer_of(test_client& c, uint64_t mid) {
  for (;;) {
    auto su = next_of<codec::status_update>(c);
    if (su.seq == 0 && su.mid == mid)
      return su;
  }
}

/// alice creates "team" with bob and carol; returns the group id.
uint32_t create_team(test_client& alice) {
  codec::group_create gc;
  gc.req = 1;
  gc.name = "team";
  gc.members = {{"bob", 0}, {"carol", 0}};
  alice.send(gc);
  auto info = next_of<codec::group_info>(alice);
  CHECK(info.req == 1);
  CHECK(info.name == "team");
  CHECK(info.owner == "alice");
  CHECK(info.members.size() == 3);
  REQUIRE(info.group_id != 0);
  return info.group_id;
}

codec::send to_group(uint64_t mid, uint32_t gid, const std::string& text) {
  codec::send s;
  s.mid = mid;
  s.group_id = gid;
  s.flags = codec::message_flags::delivery_receipt;
  s.payload = text;
  return s;
}

/// Receives a group message at `c` and acknowledges it.
codec::message receive(test_client& c) {
  auto m = next_of<codec::message>(c);
  c.send(codec::ack{m.seq});
  return m;
}

} // namespace

TEST_CASE("groups: created with members, who hear of it and receive its "
          "messages, online or not") {
  group_fixture f;
  auto alice = f.login(f.alice_token, "a1");
  auto bob = f.login(f.bob_token, "b1");
  auto gid = create_team(*alice);
  auto ev = next_of<codec::group_event>(*bob);
  CHECK(ev.kind == codec::group_event_kind::created);
  CHECK(ev.group_id == gid);
  CHECK(ev.actor == "alice");
  bob->send(codec::ack{ev.seq});
  alice->send(to_group(1, gid, "hello team"));
  CHECK(answer_of(*alice, 1).value == message_status::sent);
  auto m = receive(*bob);
  CHECK(m.group_id == gid);
  CHECK(m.sender == "alice");
  CHECK(m.payload == "hello team");
  // carol was offline: the event and the message wait in her log.
  auto carol = f.login(f.carol_token, "c1");
  CHECK(next_of<codec::group_event>(*carol).kind ==
        codec::group_event_kind::created);
  CHECK(receive(*carol).payload == "hello team");
  // DELIVERED per member reaches alice, naming the member.
  std::set<std::string> delivered;
  while (delivered.size() < 2) {
    auto su = next_of<codec::status_update>(*alice);
    if (su.value == message_status::delivered) {
      CHECK(su.group_id == gid);
      CHECK(su.mid == 1);
      delivered.insert(su.member);
    }
  }
  CHECK(delivered == std::set<std::string>{"bob", "carol"});
}

TEST_CASE("groups: NOTMEMBER, and refusals that say why") {
  group_fixture f;
  auto alice = f.login(f.alice_token, "a1");
  auto bob = f.login(f.bob_token, "b1");
  auto dave = f.login(f.dave_token, "d1");
  auto gid = create_team(*alice);
  dave->send(to_group(1, gid, "let me in"));
  auto st = answer_of(*dave, 1);
  CHECK(st.value == message_status::not_member);
  CHECK(st.text.find("not a member") != std::string::npos);
  // bob is no admin: he cannot add dave.
  codec::group_members gm;
  gm.req = 5;
  gm.group_id = gid;
  gm.members = {{"dave", 0}};
  bob->send(gm);
  auto no = next_of<codec::reply>(*bob);
  CHECK(no.req == 5);
  CHECK(no.code == status_code::permission_denied);
  CHECK(no.text.find("admin") != std::string::npos);
  // dave cannot read the group either.
  dave->send(codec::group_get{6, gid});
  auto hidden = next_of<codec::reply>(*dave);
  CHECK(hidden.code == status_code::not_found);
  // alice can; then she adds dave, who can send.
  gm.req = 7;
  alice->send(gm);
  auto ok = next_of<codec::reply>(*alice);
  CHECK(ok.req == 7);
  CHECK(ok.code == status_code::ok);
  CHECK(next_of<codec::group_event>(*dave).kind ==
        codec::group_event_kind::members_added);
  dave->send(to_group(2, gid, "thanks"));
  CHECK(answer_of(*dave, 2).value == message_status::sent);
  dave->send(codec::group_list{8});
  auto page = next_of<codec::group_list_page>(*dave);
  REQUIRE(page.groups.size() == 1);
  CHECK(page.groups[0].group_id == gid);
  CHECK(page.groups[0].my_flags == (mf::send | mf::recv));
}

TEST_CASE("groups: every member sees the group's messages in one order") {
  group_fixture f;
  auto alice = f.login(f.alice_token, "a1");
  auto bob = f.login(f.bob_token, "b1");
  auto gid = create_team(*alice);
  // alice and bob send at once, interleaved on two connections.
  for (uint64_t i = 1; i <= 20; ++i) {
    alice->send(to_group(i, gid, "a" + std::to_string(i)));
    bob->send(to_group(i, gid, "b" + std::to_string(i)));
  }
  // carol (offline meanwhile) and dave-less bob see them; carol sees all 40.
  auto carol = f.login(f.carol_token, "c1");
  CHECK(next_of<codec::group_event>(*carol).kind ==
        codec::group_event_kind::created);
  std::vector<std::string> at_carol;
  while (at_carol.size() < 40)
    at_carol.push_back(receive(*carol).payload);
  // bob sees alice's 20 in the order carol saw them (his own are not sent
  // back to him), and alice sees bob's likewise.
  std::vector<std::string> from_alice, from_bob;
  for (auto& p : at_carol)
    (p[0] == 'a' ? from_alice : from_bob).push_back(p);
  std::vector<std::string> at_bob;
  while (at_bob.size() < 20) {
    auto m = receive(*bob);
    at_bob.push_back(m.payload);
  }
  CHECK(at_bob == from_alice);
  std::vector<std::string> at_alice;
  while (at_alice.size() < 20)
    at_alice.push_back(receive(*alice).payload);
  CHECK(at_alice == from_bob);
}
