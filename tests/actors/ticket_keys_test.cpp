// tls::ticket_keys: the session-ticket keys a server keeps in its data
// directory, rotated, and what a restarted server resumes with them.

#include "actors/tls/ticket_keys.hpp"
#include "actors/tls/tls.hpp"
#include "tests/support/tls_pair.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

using namespace parley;
namespace fs = std::filesystem;

namespace {

/// A temporary directory, removed at the end of the test.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/parley-ticket-keys-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_all(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

tls::ticket_keys::options hour_and_two() {
  tls::ticket_keys::options o;
  o.rotate_s = 3600;
  o.lifetime_s = 7200;
  return o;
}

} // namespace

TEST_CASE("ticket keys: made once into a 0600 file, and read back as they "
          "were") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  auto a = tls::ticket_keys::open(path, hour_and_two(), t0);
  REQUIRE_MESSAGE(a.ok(), a.error().to_string());
  auto keys = (*a)->snapshot();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].created == t0);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  auto text = read_all(path);
  // Within the rotation nothing changes, and the file is not rewritten.
  auto b = tls::ticket_keys::open(path, hour_and_two(), t0 + 3599);
  REQUIRE(b.ok());
  auto again = (*b)->snapshot();
  REQUIRE(again.size() == 1);
  CHECK(again[0].name == keys[0].name);
  CHECK(again[0].aes == keys[0].aes);
  CHECK(again[0].hmac == keys[0].hmac);
  CHECK(read_all(path) == text);
  // In memory only: no file.
  auto m = tls::ticket_keys::open({}, hour_and_two(), t0);
  REQUIRE(m.ok());
  CHECK((*m)->snapshot().size() == 1);
  CHECK((*m)->snapshot()[0].name != keys[0].name);
}

TEST_CASE("ticket keys: a key seals for the rotation, then opens until its "
          "last ticket expired") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  auto r = tls::ticket_keys::open(path, hour_and_two(), t0);
  REQUIRE(r.ok());
  auto& keys = **r;
  auto first = keys.sealing(t0 + 10);
  auto found = keys.opening(first.name.data(), t0 + 10);
  REQUIRE(found.has_value());
  // An hour on, a new key seals; the first still opens.
  auto second = keys.sealing(t0 + 3600);
  CHECK(second.name != first.name);
  CHECK(keys.snapshot().size() == 2);
  found = keys.opening(first.name.data(), t0 + 3600);
  REQUIRE(found.has_value());
  CHECK(found->aes == first.aes);
  found = keys.opening(second.name.data(), t0 + 3600);
  REQUIRE(found.has_value());
  CHECK(found->aes == second.aes);
  // The rotation was saved: a restart now knows both.
  auto reread = tls::ticket_keys::open(path, hour_and_two(), t0 + 3601);
  REQUIRE(reread.ok());
  CHECK((*reread)->snapshot().size() == 2);
  // Three hours after it was made, the first key's tickets (sealed until
  // t0 + 1 h, valid 2 h) are all expired: it goes.
  CHECK(keys.opening(first.name.data(), t0 + 3 * 3600 - 1).has_value());
  CHECK_FALSE(keys.opening(first.name.data(), t0 + 3 * 3600).has_value());
  auto third = keys.sealing(t0 + 3 * 3600);
  auto names = keys.snapshot();
  REQUIRE(names.size() == 2);
  CHECK(names[0].name == second.name);
  CHECK(names[1].name == third.name);
  // A name the server never made opens nothing.
  std::array<uint8_t, 16> stranger{};
  CHECK_FALSE(keys.opening(stranger.data(), t0 + 3 * 3600).has_value());
}

TEST_CASE("ticket keys: after a long stop all keys are stale and a new one "
          "is made; a clock that went back far does not keep a key "
          "sealing") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  auto a = tls::ticket_keys::open(path, hour_and_two(), t0);
  REQUIRE(a.ok());
  auto old = (*a)->snapshot()[0];
  auto later = tls::ticket_keys::open(path, hour_and_two(), t0 + 86400);
  REQUIRE(later.ok());
  auto keys = (*later)->snapshot();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].name != old.name);
  CHECK(keys[0].created == t0 + 86400);
  CHECK_FALSE((*later)->opening(old.name.data(), t0 + 86400).has_value());
  // The clock went back a day: the key "from the future" is dropped.
  auto back = tls::ticket_keys::open(path, hour_and_two(), t0);
  REQUIRE(back.ok());
  REQUIRE((*back)->snapshot().size() == 1);
  CHECK((*back)->snapshot()[0].created == t0);
}

TEST_CASE("ticket keys: a clock set back by less than a key's span makes a "
          "new key that seals, and a restart keeps both as they are") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  auto a = tls::ticket_keys::open(path, hour_and_two(), t0);
  REQUIRE(a.ok());
  auto made_first = (*a)->snapshot()[0];
  // Back 5000 s: more than a rotation, less than rotation + lifetime, so
  // the key from "the future" still opens its tickets but no longer seals.
  auto back = tls::ticket_keys::open(path, hour_and_two(), t0 - 5000);
  REQUIRE(back.ok());
  auto keys = (*back)->snapshot();
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].name == made_first.name);
  CHECK(keys[1].created == t0 - 5000);
  CHECK((*back)->sealing(t0 - 5000).name == keys[1].name);
  CHECK((*back)->opening(made_first.name.data(), t0 - 5000).has_value());
  // Restarted at the same time: the newest key (the last made, not the one
  // with the latest time) still seals, and nothing is rewritten.
  auto text = read_all(path);
  auto again = tls::ticket_keys::open(path, hour_and_two(), t0 - 5000);
  REQUIRE(again.ok());
  auto kept = (*again)->snapshot();
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].name == keys[0].name);
  CHECK(kept[1].name == keys[1].name);
  CHECK((*again)->sealing(t0 - 5000).name == keys[1].name);
  CHECK(read_all(path) == text);
}

TEST_CASE("ticket keys: a key file readable by others is made private") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  REQUIRE(tls::ticket_keys::open(path, hour_and_two(), t0).ok());
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  auto r = tls::ticket_keys::open(path, hour_and_two(), t0 + 1);
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK((*r)->snapshot().size() == 1);
}

TEST_CASE("ticket keys: a malformed file is refused with the line that is "
          "wrong") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  int64_t t0 = 1'800'000'000;
  REQUIRE(tls::ticket_keys::open(path, hour_and_two(), t0).ok());
  auto good = read_all(path);
  for (const char* bad : {"v1 12 00ff\n", "v2 1 x y z\n", "garbage\n"}) {
    CAPTURE(bad);
    std::ofstream{path, std::ios::trunc} << good << bad;
    auto r = tls::ticket_keys::open(path, hour_and_two(), t0);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == status_code::corruption);
    CHECK(r.error().message().find("line 5") != std::string::npos);
    CHECK(r.error().message().find("delete the file") != std::string::npos);
  }
  tls::ticket_keys::options zero;
  zero.rotate_s = 0;
  CHECK(tls::ticket_keys::open(path, zero, t0).error().code() ==
        status_code::invalid_argument);
}

TEST_CASE("ticket keys: a server restarted on the same key file resumes the "
          "tickets of the one before; on new keys the handshake is full") {
  temp_dir d;
  auto path = d.path + "/ticket.keys";
  auto now = static_cast<int64_t>(std::time(nullptr));
  test::tls_pair p;
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  auto before = tls::ticket_keys::open(path, {}, now);
  REQUIRE(before.ok());
  REQUIRE(p.new_server_context(*before).empty());
  REQUIRE(p.connect().empty());
  auto t = p.client->latest_ticket();
  REQUIRE(t != nullptr);
  // The restart: a new SSL_CTX and the keys read back from the file.
  auto after = tls::ticket_keys::open(path, {}, now);
  REQUIRE(after.ok());
  REQUIRE(p.new_server_context(*after).empty());
  REQUIRE(p.connect(nullptr, t).empty());
  CHECK(p.client->resumed());
  CHECK(p.server->resumed());
  // Without the file, the same ticket does not open.
  fs::remove(path);
  auto fresh = tls::ticket_keys::open(path, {}, now);
  REQUIRE(fresh.ok());
  REQUIRE(p.new_server_context(*fresh).empty());
  REQUIRE(p.connect(nullptr, t).empty());
  CHECK_FALSE(p.client->resumed());
  CHECK_FALSE(p.server->resumed());
  // And without keys the server sends no ticket at all.
  REQUIRE(p.new_server_context(nullptr).empty());
  REQUIRE(p.connect().empty());
  CHECK(p.client->latest_ticket() == nullptr);
}
