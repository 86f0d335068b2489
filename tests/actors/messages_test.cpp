// Every type that crosses an actor boundary survives CAF's serialization,
// so an inspect() that forgets a field fails here, not across a link later.

#include "actors/server/messages.hpp"

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <doctest/doctest.h>

using namespace parley::srv;

namespace {

template<class T>
T round_trip(caf::actor_system& sys, T x) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE(!sink(x));
  T y;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(y));
  return y;
}

} // namespace

TEST_CASE("server messages survive serialization") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  append_request req{7, "demo", "alice", "phone", {1, 2, 3}};
  auto r = round_trip(sys, req);
  CHECK(r.sender_uid == 7);
  CHECK(r.app_id == "demo");
  CHECK(r.sender == "alice");
  CHECK(r.device == "phone");
  CHECK(r.send_body == bytes{1, 2, 3});
  append_reply rep{0x82, "full", true, 3, 4, 5, 6, 7, nullptr};
  auto p = round_trip(sys, rep);
  CHECK(p.receivers == 7);
  CHECK(p.status == 0x82);
  CHECK(p.text == "full");
  CHECK(p.duplicate);
  CHECK(p.sender_seq == 3);
  CHECK(p.receiver_uid == 4);
  CHECK(p.receiver_seq == 5);
  CHECK(p.ts_ms == 6);
}
