// tls::stream over memory BIOs: what sessions and clients rely on when
// bytes arrive in any grouping.

#include "actors/tls/tls.hpp"
#include "tests/support/tls_pair.hpp"

#include <doctest/doctest.h>
#include <openssl/err.h>

#include <string>

using namespace parley;

namespace {

tls::bytes sealed(tls::stream& from, const std::string& text) {
  tls::bytes out;
  REQUIRE(
    from.send(reinterpret_cast<const uint8_t*>(text.data()), text.size(), out)
      .ok());
  return out;
}

std::string text_of(const tls::bytes& b) {
  return std::string{b.begin(), b.end()};
}

} // namespace

TEST_CASE("tls stream: records that arrive together, in pieces or with the "
          "close come out whole and in order") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  tls::bytes wire, plain, back;
  for (auto* part : {"one ", "two ", "three"}) {
    auto r = sealed(*p.client, part);
    wire.insert(wire.end(), r.begin(), r.end());
  }
  SUBCASE("three records in one read") {
    REQUIRE(p.server->receive(wire.data(), wire.size(), plain, back).ok());
    CHECK(text_of(plain) == "one two three");
  }
  SUBCASE("byte by byte") {
    for (auto b : wire)
      REQUIRE(p.server->receive(&b, 1, plain, back).ok());
    CHECK(text_of(plain) == "one two three");
  }
  SUBCASE("a record and a half, then the rest") {
    size_t cut = wire.size() / 2;
    REQUIRE(p.server->receive(wire.data(), cut, plain, back).ok());
    CHECK(text_of(plain).size() < 13);
    REQUIRE(p.server->receive(wire.data() + cut, wire.size() - cut, plain, back)
              .ok());
    CHECK(text_of(plain) == "one two three");
  }
  SUBCASE("the records and the peer's close in one read") {
    p.client->shutdown(wire);
    auto st = p.server->receive(wire.data(), wire.size(), plain, back);
    CHECK(text_of(plain) == "one two three");
    CHECK(st.code() == status_code::unavailable);
  }
}

TEST_CASE("tls stream: an error another library left on this thread does not "
          "fail the next record") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  auto wire = sealed(*p.client, "hello");
  tls::bytes plain, back;
  // Half a record: SSL_read says "want more", which SSL_get_error would
  // read as a failure if the stale entry were still queued.
  ERR_raise(ERR_LIB_SYS, 1);
  REQUIRE(ERR_peek_error() != 0);
  auto half = wire.size() / 2;
  auto st = p.server->receive(wire.data(), half, plain, back);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  CHECK(plain.empty());
  ERR_raise(ERR_LIB_SYS, 1);
  st = p.server->receive(wire.data() + half, wire.size() - half, plain, back);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  CHECK(text_of(plain) == "hello");
  ERR_raise(ERR_LIB_SYS, 1);
  auto answer = sealed(*p.server, "hi");
  REQUIRE(p.client->receive(answer.data(), answer.size(), plain, back).ok());
  CHECK(text_of(plain) == "hellohi");
  ERR_clear_error();
}

TEST_CASE("tls stream: giving back the BIOs' buffers loses nothing, between "
          "records or in the middle of one") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  tls::bytes plain, back;
  // A burst grows both BIOs (a 60 KB message is four records).
  std::string big(60000, 'b');
  auto wire = sealed(*p.client, big);
  REQUIRE(p.server->receive(wire.data(), wire.size(), plain, back).ok());
  REQUIRE(plain.size() == big.size());
  plain.clear();
  p.server->release_buffers();
  p.client->release_buffers();
  // Both ways still work, several times over.
  for (int i = 0; i < 3; ++i) {
    auto up = sealed(*p.client, "up" + std::to_string(i));
    REQUIRE(p.server->receive(up.data(), up.size(), plain, back).ok());
    auto down = sealed(*p.server, "down" + std::to_string(i));
    tls::bytes got;
    REQUIRE(p.client->receive(down.data(), down.size(), got, back).ok());
    CHECK(text_of(got) == "down" + std::to_string(i));
    p.server->release_buffers();
    p.client->release_buffers();
  }
  CHECK(text_of(plain) == "up0up1up2");
  plain.clear();
  // Half a record read, the buffers given back, then the rest.
  wire = sealed(*p.client, "split across a release");
  auto half = wire.size() / 2;
  REQUIRE(p.server->receive(wire.data(), half, plain, back).ok());
  CHECK(plain.empty());
  p.server->release_buffers();
  REQUIRE(p.server->receive(wire.data() + half, wire.size() - half, plain, back)
            .ok());
  CHECK(text_of(plain) == "split across a release");
}
