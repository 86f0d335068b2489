// tls::stream over memory BIOs: what sessions and clients rely on when
// bytes arrive in any grouping.

#include "actors/tls/tls.hpp"
#include "tests/support/tls_pair.hpp"

#include <doctest/doctest.h>
#include <openssl/err.h>

#include <malloc.h>

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

TEST_CASE("tls stream: TLS 1.3 with AES-128-GCM, the cheapest suite both "
          "sides offer, in full and resumed handshakes") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  CHECK(p.client->version() == "TLSv1.3");
  CHECK(p.client->cipher() == "TLS_AES_128_GCM_SHA256");
  CHECK(p.server->cipher() == "TLS_AES_128_GCM_SHA256");
  auto t = p.client->latest_ticket();
  REQUIRE(t != nullptr);
  REQUIRE(p.connect(nullptr, t).empty());
  CHECK(p.client->resumed());
  CHECK(p.server->cipher() == "TLS_AES_128_GCM_SHA256");
}

TEST_CASE("tls stream: a client resumes the ticket of a connection that "
          "ended without a close, and still knows the certificate") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  CHECK_FALSE(p.client->resumed());
  auto first = p.client->latest_ticket();
  REQUIRE(first != nullptr); // the server sends one after the handshake
  auto fp = p.client->peer_fingerprint();
  REQUIRE_FALSE(fp.empty());
  // connect() frees the old streams without a close_notify, as a dropped
  // network does. OpenSSL marks the session of such a connection unusable
  // unless the stream says it was shut down (~stream), and the ticket is
  // that session.
  REQUIRE(p.connect(nullptr, first).empty());
  CHECK(p.client->resumed());
  CHECK(p.server->resumed());
  CHECK(p.client->peer_fingerprint() == fp);
  auto up = sealed(*p.client, "after resumption");
  tls::bytes plain, back;
  REQUIRE(p.server->receive(up.data(), up.size(), plain, back).ok());
  CHECK(text_of(plain) == "after resumption");
  // The resumed connection got a fresh ticket, which resumes too.
  auto second = p.client->latest_ticket();
  REQUIRE(second != nullptr);
  CHECK(second != first);
  REQUIRE(p.connect(nullptr, second).empty());
  CHECK(p.client->resumed());
}

TEST_CASE("tls stream: the ticket survives the server's goodbye "
          "(close_notify), and resumes under a pinned fingerprint too") {
  tls::client_options pin;
  pin.pinned_fingerprint = "generated"; // tls_pair pins its certificate
  for (auto opts : {tls::client_options{}, pin}) {
    test::tls_pair p{opts};
    REQUIRE_MESSAGE(p.error.empty(), p.error);
    auto fp = p.client->peer_fingerprint();
    tls::bytes wire, plain, back;
    p.server->shutdown(wire); // as parleyd after a goodbye frame
    auto st = p.client->receive(wire.data(), wire.size(), plain, back);
    CHECK(st.code() == status_code::unavailable);
    auto t = p.client->latest_ticket();
    REQUIRE(t != nullptr);
    // The client stream, closed cleanly, is freed by the next connect().
    REQUIRE(p.connect(nullptr, t).empty());
    CHECK(p.client->resumed());
    CHECK(p.client->peer_fingerprint() == fp);
  }
}

TEST_CASE("tls stream: a ticket another server sealed is refused and the "
          "handshake is a full one") {
  test::tls_pair a, b; // two servers, two certificates, two ticket keys
  REQUIRE_MESSAGE(a.error.empty(), a.error);
  REQUIRE_MESSAGE(b.error.empty(), b.error);
  auto from_a = a.client->latest_ticket();
  REQUIRE(from_a != nullptr);
  // b's client context trusts only b's certificate, so the full handshake
  // verifies b (a resumption would have skipped that).
  REQUIRE(b.connect(nullptr, from_a).empty());
  CHECK_FALSE(b.client->resumed());
  CHECK_FALSE(b.server->resumed());
  CHECK(b.client->peer_fingerprint() != a.client->peer_fingerprint());
}

TEST_CASE("tls stream: a stream that fails keeps no ticket") {
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  REQUIRE(p.client->latest_ticket() != nullptr);
  tls::bytes garbage(64, 0x17), plain, back; // not a valid record
  CHECK_FALSE(
    p.client->receive(garbage.data(), garbage.size(), plain, back).ok());
  CHECK(p.client->latest_ticket() == nullptr);
}

// Counts the heap with glibc's malloc, which the sanitizers replace (gcc
// says so with __SANITIZE_*__, clang with __has_feature).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PARLEY_OWN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
  __has_feature(memory_sanitizer)
#define PARLEY_OWN_MALLOC 1
#endif
#endif
#ifndef PARLEY_OWN_MALLOC
TEST_CASE("tls stream: giving back the buffers frees the record buffer a "
          "session ticket left behind") {
  test::tls_pair p; // the client read the server's ticket last
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  REQUIRE(p.client->latest_ticket() != nullptr);
  // Reading a message after the handshake set up a 17 KiB write buffer,
  // which SSL_MODE_RELEASE_BUFFERS frees only after the next write: an
  // idle client would keep it (10,000 simulated users: 100 MiB).
  auto before = mallinfo2().uordblks;
  p.client->release_buffers();
  auto after = mallinfo2().uordblks;
  CHECK(before > after);
  CHECK(before - after >= 16384);
  // The client still writes and reads.
  auto up = sealed(*p.client, "still there");
  tls::bytes plain, back;
  REQUIRE(p.server->receive(up.data(), up.size(), plain, back).ok());
  CHECK(text_of(plain) == "still there");
  auto down = sealed(*p.server, "and back");
  plain.clear();
  REQUIRE(p.client->receive(down.data(), down.size(), plain, back).ok());
  CHECK(text_of(plain) == "and back");
}
#endif
