// The LMDB layer: environment, transactions, cursors, map growth, format
// versions, big-endian keys. Every test works in its own temporary directory.

#include "store/keys.hpp"
#include "store/lmdb.hpp"

#include <doctest/doctest.h>

#include <lmdb.h>

#include <algorithm>
#include <set>
#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace parley::store;
using parley::result;
using parley::status;
using parley::status_code;

namespace {

/// A fresh directory under /tmp, removed with everything in it.
struct temp_dir {
  std::string path;

  temp_dir() {
    char tmpl[] = "/tmp/parley-store-test-XXXXXX";
    char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }

  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::unique_ptr<env> open_env(const std::string& dir, env_options opts = {}) {
  auto e = env::open(dir, opts);
  REQUIRE_MESSAGE(e.ok(), e.error().to_string());
  return std::move(*e);
}

dbi open_db(env& e, std::string_view name) {
  auto d = e.open_dbi(name);
  REQUIRE_MESSAGE(d.ok(), d.error().to_string());
  CHECK(d->valid());
  return *d;
}

/// The value under `key`, "<absent>" or "<error: ...>".
std::string read(env& e, dbi db, std::string_view key) {
  auto t = e.begin_read();
  if (!t)
    return "<error: " + t.error().to_string() + ">";
  auto v = t->get(db, key);
  if (!v)
    return "<error: " + v.error().to_string() + ">";
  if (!*v)
    return "<absent>";
  return std::string{**v};
}

std::string be64(uint64_t v) {
  std::string s;
  put_be64(s, v);
  return s;
}

std::string user_seq(uint64_t user, uint64_t seq) {
  key_builder k;
  k.u64(user).u64(seq);
  return std::string{k.view()};
}

env_options tiny_map(uint64_t max) {
  env_options o;
  o.map_size = 64 * 1024;
  o.max_map_size = max;
  o.sync = false;
  return o;
}

} // namespace

TEST_CASE("big-endian keys sort in numeric order") {
  std::vector<uint64_t> nums = {0,
                                1,
                                2,
                                255,
                                256,
                                257,
                                65535,
                                65536,
                                uint64_t{1} << 32,
                                (uint64_t{1} << 32) + 1,
                                uint64_t{1} << 63,
                                ~uint64_t{0}};
  for (size_t i = 0; i < nums.size(); ++i) {
    auto a = be64(nums[i]);
    REQUIRE(a.size() == 8);
    CHECK(get_be64(a.data()) == nums[i]);
    for (size_t j = 0; j < nums.size(); ++j)
      CHECK((a < be64(nums[j])) == (nums[i] < nums[j]));
  }
  std::string s;
  put_be32(s, 0x01020304u);
  CHECK(s == std::string("\x01\x02\x03\x04", 4));
  CHECK(get_be32(s.data()) == 0x01020304u);
  CHECK(user_seq(1, 300) < user_seq(2, 1));
  CHECK(user_seq(2, 255) < user_seq(2, 256));
}

TEST_CASE("keys sort as bytes: unsigned, a prefix first (LMDB's order)") {
  // The databases use our own comparator (8 bytes at a time); the order
  // must be LMDB's default, memcmp's, or stores written before it would
  // be misread.
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  std::mt19937_64 rng{7};
  std::set<std::string> want;
  while (want.size() < 4000) {
    std::string k(1 + rng() % 40, '\0');
    for (auto& c : k) // few distinct bytes: long common prefixes
      c = static_cast<char>(std::array<int, 5>{0, 1, 0x7f, 0x80, 0xff}[rng() % 5]);
    if (rng() % 4 == 0 && !want.empty() && want.rbegin()->size() < 80)
      // a prefix of a key, or one longer
      k = rng() % 2 ? want.begin()->substr(0, k.size() % 8 + 1)
                    : *want.rbegin() + k;
    want.insert(k);
  }
  {
    auto t = e->begin_write();
    REQUIRE(t.ok());
    for (auto& k : want)
      REQUIRE(t->put(kv, k, "").ok());
    REQUIRE(t->commit().ok());
  }
  auto r = e->begin_read();
  REQUIRE(r.ok());
  auto c = r->open_cursor(kv);
  REQUIRE(c.ok());
  std::vector<std::string> got;
  for (auto s = c->first(); c->valid(); s = c->next()) {
    REQUIRE(s.ok());
    got.emplace_back(c->key());
  }
  CHECK(got == std::vector<std::string>(want.begin(), want.end()));
  // And each key is found by a seek (the search uses the comparator too).
  for (auto& k : want) {
    REQUIRE(c->seek(k).ok());
    REQUIRE(c->valid());
    CHECK(c->key() == k);
  }
}

TEST_CASE("key_builder composes fields and refuses to overflow") {
  key_builder k;
  k.u8(7).u32(9).u64(10).bytes("bob");
  CHECK(k.ok());
  CHECK(k.size() == 1 + 4 + 8 + 3);
  auto v = k.view();
  CHECK(v[0] == 7);
  CHECK(get_be32(v.data() + 1) == 9);
  CHECK(get_be64(v.data() + 5) == 10);
  CHECK(v.substr(13) == "bob");
  k.clear();
  CHECK(k.size() == 0);
  k.bytes(std::string(key_builder::max_size, 'x'));
  CHECK(k.ok());
  k.u8(1);
  CHECK(!k.ok());
  CHECK(k.size() == key_builder::max_size + 1);
  k.u64(1); // stays saturated
  CHECK(k.size() == key_builder::max_size + 1);
}

TEST_CASE("open creates the directory and reopen keeps the data") {
  temp_dir tmp;
  std::string dir = tmp.path + "/a/b/data";
  {
    auto e = open_env(dir);
    CHECK(std::filesystem::is_directory(dir));
    CHECK(e->path() == std::filesystem::canonical(dir).string());
    CHECK(e->max_key_size() == key_builder::max_size);
    auto kv = open_db(*e, "kv");
    auto st = e->write([&](txn& t) { return t.put(kv, "alice", "hello"); });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    CHECK(read(*e, kv, "alice") == "hello");
    CHECK(e->sync().ok());
  }
  auto e = open_env(dir);
  auto kv = open_db(*e, "kv");
  CHECK(read(*e, kv, "alice") == "hello");
  CHECK(read(*e, kv, "bob") == "<absent>");
  auto s = e->stats();
  REQUIRE(s.ok());
  CHECK(s->map_size == env_options{}.map_size);
  CHECK(s->max_readers == 512);
  CHECK(s->page_size >= 4096);
  CHECK(s->used_pages > 0);
  CHECK(s->last_txn_id >= 2);
}

TEST_CASE("one data directory opens once per process") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto again = env::open(tmp.path + "/.", {});
  REQUIRE(!again.ok());
  CHECK(again.error().code() == status_code::failed_precondition);
  CHECK(again.error().message().find(tmp.path) != std::string::npos);
  e.reset();
  CHECK(env::open(tmp.path, {}).ok());
}

TEST_CASE("open reports bad directories and options with the path") {
  temp_dir tmp;
  std::string file = tmp.path + "/file";
  {
    auto f = std::fopen(file.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
  auto e = env::open(file + "/sub", {});
  REQUIRE(!e.ok());
  CHECK(e.error().code() == status_code::io_error);
  CHECK(e.error().message().find(file) != std::string::npos);
  env_options bad;
  bad.max_map_size = bad.map_size / 2;
  auto b = env::open(tmp.path, bad);
  REQUIRE(!b.ok());
  CHECK(b.error().code() == status_code::invalid_argument);
}

TEST_CASE("put, get, del and not_found") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  auto other = open_db(*e, "other");
  CHECK(kv.id() != other.id());
  CHECK(open_db(*e, "kv").id() == kv.id());

  auto t = e->begin_write();
  REQUIRE(t.ok());
  CHECK(t->active());
  CHECK(!t->read_only());
  auto absent = t->get(kv, "k1");
  REQUIRE(absent.ok());
  CHECK(!absent->has_value());
  REQUIRE(t->put(kv, "k1", "v1").ok());
  REQUIRE(t->put(kv, "k2", "").ok());
  REQUIRE(t->put(other, "k1", "elsewhere").ok());
  auto v = t->get(kv, "k1");
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  CHECK(**v == "v1");
  auto empty = t->get(kv, "k2");
  REQUIRE(empty.ok());
  REQUIRE(empty->has_value());
  CHECK((*empty)->empty());
  REQUIRE(t->put(kv, "k1", "v1b").ok()); // overwrite
  auto dup = t->put(kv, "k1", "v1c", put_flags::no_overwrite);
  CHECK(dup.code() == status_code::already_exists);
  auto n = t->entries(kv);
  REQUIRE(n.ok());
  CHECK(*n == 2);
  REQUIRE(t->commit().ok());
  CHECK(!t->active());
  CHECK(t->commit().code() == status_code::failed_precondition);

  CHECK(read(*e, kv, "k1") == "v1b");
  CHECK(read(*e, other, "k1") == "elsewhere");

  auto st = e->write([&](txn& w) { return w.del(kv, "k1"); });
  CHECK(st.ok());
  CHECK(read(*e, kv, "k1") == "<absent>");
  CHECK(read(*e, other, "k1") == "elsewhere");
  st = e->write([&](txn& w) { return w.del(kv, "k1"); });
  CHECK(st.code() == status_code::not_found);
  CHECK(st.message().find("'kv'") != std::string::npos);
  CHECK(st.message().find(e->path()) != std::string::npos);
  CHECK(st.message().find("MDB_NOTFOUND") != std::string::npos);
}

TEST_CASE("bad keys and writes in read transactions are refused") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  auto w = e->begin_write();
  REQUIRE(w.ok());
  CHECK(w->put(kv, "", "x").code() == status_code::invalid_argument);
  std::string longest(e->max_key_size(), 'k');
  CHECK(w->put(kv, longest, "x").ok());
  auto too_long = w->put(kv, longest + "k", "x");
  CHECK(too_long.code() == status_code::invalid_argument);
  CHECK(too_long.message().find("512 bytes") != std::string::npos);
  key_builder overflowed;
  overflowed.bytes(longest).u64(1);
  CHECK(w->get(kv, overflowed).error().code() == status_code::invalid_argument);
  CHECK(w->open_dbi("").error().code() == status_code::invalid_argument);
  CHECK(w->get(dbi{}, "k").error().code() == status_code::invalid_argument);
  REQUIRE(w->commit().ok());

  auto r = e->begin_read();
  REQUIRE(r.ok());
  CHECK(r->read_only());
  CHECK(r->put(kv, "a", "b").code() == status_code::failed_precondition);
  CHECK(r->del(kv, "a").code() == status_code::failed_precondition);
  CHECK(r->reserve(kv, "a", 4).error().code() ==
        status_code::failed_precondition);
  CHECK(r->open_dbi("x").error().code() == status_code::failed_precondition);
  auto c = r->open_cursor(kv);
  REQUIRE(c.ok());
  REQUIRE(c->first().ok());
  REQUIRE(c->valid());
  CHECK(c->del().code() == status_code::failed_precondition);
  REQUIRE(r->commit().ok()); // ends a read txn
  CHECK(!c->is_open());
  CHECK(r->get(kv, "a").error().code() == status_code::failed_precondition);
}

TEST_CASE("too many named databases is resource_exhausted") {
  temp_dir tmp;
  env_options o;
  o.max_dbs = 2;
  auto e = open_env(tmp.path, o);
  open_db(*e, "a");
  open_db(*e, "b");
  auto c = e->open_dbi("c");
  REQUIRE(!c.ok());
  CHECK(c.error().code() == status_code::resource_exhausted);
  CHECK(c.error().message().find("max_dbs") != std::string::npos);
}

TEST_CASE("abort discards writes") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  REQUIRE(e->write([&](txn& t) { return t.put(kv, "keep", "1"); }).ok());
  {
    auto t = e->begin_write();
    REQUIRE(t.ok());
    REQUIRE(t->put(kv, "a", "1").ok());
    REQUIRE(t->del(kv, "keep").ok());
    t->abort();
    CHECK(!t->active());
  }
  {
    auto t = e->begin_write();
    REQUIRE(t.ok());
    REQUIRE(t->put(kv, "b", "1").ok());
    // destroyed without commit
  }
  auto st = e->write([&](txn& t) {
    if (auto s = t.put(kv, "c", "1"); !s.ok())
      return s;
    return status{status_code::cancelled, "changed my mind"};
  });
  CHECK(st.code() == status_code::cancelled);
  CHECK(read(*e, kv, "a") == "<absent>");
  CHECK(read(*e, kv, "b") == "<absent>");
  CHECK(read(*e, kv, "c") == "<absent>");
  CHECK(read(*e, kv, "keep") == "1");
}

TEST_CASE("a read transaction sees a snapshot") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  REQUIRE(e->write([&](txn& t) { return t.put(kv, "k", "old"); }).ok());
  auto r = e->begin_read();
  REQUIRE(r.ok());
  REQUIRE(e->write([&](txn& t) { return t.put(kv, "k", "new"); }).ok());
  auto v = r->get(kv, "k");
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  CHECK(**v == "old");
  r->abort();
  CHECK(read(*e, kv, "k") == "new");
}

TEST_CASE("cursors scan big-endian keys forward and backward") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto log = open_db(*e, "log");
  std::vector<uint64_t> seqs = {
    1,     2,     3,        255,        256,        257, 1000,
    65535, 65536, 1u << 24, 1ull << 32, 1ull << 40, 5,   (1ull << 63) + 7};
  std::sort(seqs.begin(), seqs.end());
  auto shuffled = seqs;
  std::mt19937 rng{42};
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  auto st = e->write([&](txn& t) -> status {
    for (uint64_t user : {1, 2, 3})
      for (auto seq : shuffled)
        if (auto s = t.put(log, user_seq(user, seq),
                           std::to_string(user) + ":" + std::to_string(seq));
            !s.ok())
          return s;
    return {};
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());

  auto t = e->begin_read();
  REQUIRE(t.ok());
  auto c = t->open_cursor(log);
  REQUIRE(c.ok());
  CHECK(!c->valid());

  SUBCASE("forward over one user") {
    std::vector<uint64_t> got;
    status s;
    auto end = user_seq(3, 0);
    for (s = c->seek(user_seq(2, 0)); s.ok() && c->valid() && c->key() < end;
         s = c->next()) {
      REQUIRE(c->key().size() == 16);
      CHECK(get_be64(c->key().data()) == 2);
      uint64_t seq = get_be64(c->key().data() + 8);
      CHECK(c->value() == "2:" + std::to_string(seq));
      got.push_back(seq);
    }
    REQUIRE(s.ok());
    CHECK(got == seqs);
  }

  SUBCASE("backward over one user, from a sequence number") {
    std::vector<uint64_t> got;
    status s;
    for (s = c->seek_for_prev(user_seq(2, 60000));
         s.ok() && c->valid() && get_be64(c->key().data()) == 2; s = c->prev())
      got.push_back(get_be64(c->key().data() + 8));
    REQUIRE(s.ok());
    std::vector<uint64_t> want;
    for (auto q : seqs)
      if (q <= 60000)
        want.push_back(q);
    std::reverse(want.begin(), want.end());
    CHECK(got == want);
  }

  SUBCASE("backward from an exact key includes it") {
    REQUIRE(c->seek_for_prev(user_seq(2, 256)).ok());
    REQUIRE(c->valid());
    CHECK(c->key() == user_seq(2, 256));
    REQUIRE(c->prev().ok());
    REQUIRE(c->valid());
    CHECK(c->key() == user_seq(2, 255));
  }

  SUBCASE("whole database both ways") {
    size_t n = 0;
    std::string prev_key;
    for (auto s = c->first(); c->valid(); s = c->next()) {
      REQUIRE(s.ok());
      CHECK(prev_key < c->key());
      prev_key = std::string{c->key()};
      ++n;
    }
    CHECK(n == 3 * seqs.size());
    CHECK(c->next().code() == status_code::failed_precondition);
    n = 0;
    for (auto s = c->last(); c->valid(); s = c->prev()) {
      REQUIRE(s.ok());
      CHECK((n == 0 || c->key() < prev_key));
      prev_key = std::string{c->key()};
      ++n;
    }
    CHECK(n == 3 * seqs.size());
  }

  SUBCASE("edges") {
    REQUIRE(c->seek(user_seq(9, 0)).ok());
    CHECK(!c->valid());
    REQUIRE(c->seek_for_prev(user_seq(9, 0)).ok());
    REQUIRE(c->valid());
    CHECK(c->key() == user_seq(3, seqs.back()));
    REQUIRE(c->seek_for_prev(user_seq(1, 0)).ok());
    CHECK(!c->valid());
    REQUIRE(c->seek("").ok());
    REQUIRE(c->valid());
    CHECK(c->key() == user_seq(1, seqs.front()));
    REQUIRE(c->seek(user_seq(1, 4)).ok());
    REQUIRE(c->valid());
    CHECK(c->key() == user_seq(1, 5));
  }
}

TEST_CASE("cursors on an empty database find nothing") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto log = open_db(*e, "log");
  auto t = e->begin_read();
  REQUIRE(t.ok());
  auto c = t->open_cursor(log);
  REQUIRE(c.ok());
  CHECK(c->first().ok());
  CHECK(!c->valid());
  CHECK(c->last().ok());
  CHECK(!c->valid());
  CHECK(c->seek("a").ok());
  CHECK(!c->valid());
  CHECK(c->seek_for_prev("a").ok());
  CHECK(!c->valid());
}

TEST_CASE("cursor del removes ranges forward and backward across pages") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto log = open_db(*e, "log");
  const std::string body(100, 'b');
  REQUIRE(e->write([&](txn& t) -> status {
             for (uint64_t i = 0; i < 2000; ++i)
               if (auto s = t.put(log, be64(i), body, put_flags::append);
                   !s.ok())
                 return s;
             return {};
           })
            .ok());
  // Forward: delete [500, 1500).
  auto st = e->write([&](txn& t) -> status {
    auto c = t.open_cursor(log);
    if (!c)
      return c.error();
    status s;
    for (s = c->seek(be64(500)); s.ok() && c->valid() && c->key() < be64(1500);
         s = c->next())
      if (s = c->del(); !s.ok())
        return s;
    return s;
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  // Backward: delete [1600, 1900].
  st = e->write([&](txn& t) -> status {
    auto c = t.open_cursor(log);
    if (!c)
      return c.error();
    status s;
    for (s = c->seek_for_prev(be64(1900));
         s.ok() && c->valid() && c->key() >= be64(1600); s = c->prev())
      if (s = c->del(); !s.ok())
        return s;
    return s;
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  std::vector<uint64_t> want;
  for (uint64_t i = 0; i < 2000; ++i)
    if (i < 500 || (i >= 1500 && i < 1600) || i > 1900)
      want.push_back(i);
  auto t = e->begin_read();
  REQUIRE(t.ok());
  CHECK(*t->entries(log) == want.size());
  auto c = t->open_cursor(log);
  REQUIRE(c.ok());
  std::vector<uint64_t> got;
  for (auto s = c->first(); s.ok() && c->valid(); s = c->next())
    got.push_back(get_be64(c->key().data()));
  CHECK(got == want);
  // MDB_APPEND checks the order.
  auto w = e->begin_write();
  REQUIRE(w.ok());
  CHECK(w->put(log, be64(3), body, put_flags::append).code() ==
        status_code::already_exists);
}

TEST_CASE("deleting the first and last entries through a cursor") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  REQUIRE(e->write([&](txn& t) -> status {
             for (auto k : {"a", "b", "c"})
               if (auto s = t.put(kv, k, k); !s.ok())
                 return s;
             return {};
           })
            .ok());
  auto t = e->begin_write();
  REQUIRE(t.ok());
  auto c = t->open_cursor(kv);
  REQUIRE(c.ok());
  REQUIRE(c->last().ok());
  REQUIRE(c->del().ok());
  CHECK(!c->valid());
  REQUIRE(c->next().ok());
  CHECK(!c->valid());
  REQUIRE(c->first().ok());
  REQUIRE(c->del().ok());
  REQUIRE(c->prev().ok());
  CHECK(!c->valid());
  REQUIRE(c->first().ok());
  REQUIRE(c->valid());
  CHECK(c->key() == "b");
  REQUIRE(c->del().ok());
  REQUIRE(c->next().ok());
  CHECK(!c->valid());
  CHECK(*t->entries(kv) == 0);
}

TEST_CASE("cursors close with their transaction and survive moves") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  cursor outlives;
  {
    auto t = e->begin_write();
    REQUIRE(t.ok());
    REQUIRE(t->put(kv, "a", "1").ok());
    REQUIRE(t->put(kv, "b", "2").ok());
    auto c1 = t->open_cursor(kv);
    auto c2 = t->open_cursor(kv);
    auto c3 = t->open_cursor(kv);
    REQUIRE((c1.ok() && c2.ok() && c3.ok()));
    c2->close(); // unlink from the middle of the list
    CHECK(!c2->is_open());
    txn moved = std::move(*t); // cursors follow the txn
    CHECK(!t->active());
    outlives = std::move(*c3);
    CHECK(!c3->is_open());
    REQUIRE(outlives.first().ok());
    CHECK(outlives.key() == "a");
    REQUIRE(c1->last().ok());
    CHECK(c1->key() == "b");
    REQUIRE(moved.commit().ok());
    CHECK(!c1->is_open());
    CHECK(!outlives.is_open());
  }
  CHECK(outlives.first().code() == status_code::failed_precondition);
  CHECK(read(*e, kv, "b") == "2");
  auto r = e->begin_read();
  REQUIRE(r.ok());
  auto rc = r->open_cursor(kv);
  REQUIRE(rc.ok());
  REQUIRE(rc->first().ok());
  r->abort();
  CHECK(!rc->is_open());
  CHECK(!rc->valid());
}

TEST_CASE("cursor put writes in and out of order, beside other writers") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  std::vector<uint64_t> keys(5000);
  for (uint64_t i = 0; i < keys.size(); ++i)
    keys[i] = i * 7;
  std::mt19937_64 rng{42};
  // Half in order (the fast path: the key is on the cursor's page), then
  // the rest shuffled, interleaved with txn::put and a cursor del, so
  // pages split under the cursor.
  std::shuffle(keys.begin() + keys.size() / 2, keys.end(), rng);
  {
    auto t = e->begin_write();
    REQUIRE(t.ok());
    auto c = t->open_cursor(kv);
    REQUIRE(c.ok());
    for (size_t i = 0; i < keys.size(); ++i) {
      std::string v(100 + i % 50, static_cast<char>('a' + i % 26));
      REQUIRE(c->put(be64(keys[i]), v).ok());
      CHECK(!c->valid()); // positioned, but not for reading
      if (i % 97 == 0)
        REQUIRE(t->put(kv, be64(keys[i] + 1), "odd").ok());
    }
    // Overwrite, no_overwrite, and reading after a seek.
    REQUIRE(c->put(be64(0), "zero").ok());
    CHECK(c->put(be64(7), "x", put_flags::no_overwrite).code() ==
          status_code::already_exists);
    REQUIRE(c->seek(be64(7)).ok());
    REQUIRE(c->valid());
    CHECK(c->value() == std::string(101, 'b'));
    REQUIRE(c->del().ok());
    // append refuses a key that does not sort last.
    CHECK(!c->put(be64(3), "y", put_flags::append).ok());
    REQUIRE(c->put(be64(1) + std::string(8, '\xff'), "y").ok());
    REQUIRE(t->commit().ok());
  }
  CHECK(read(*e, kv, be64(0)) == "zero");
  CHECK(read(*e, kv, be64(7)) == "<absent>"); // deleted
  CHECK(read(*e, kv, be64(14)) == std::string(102, 'c'));
  CHECK(read(*e, kv, be64(1)) == "odd");
  auto r = e->begin_read();
  REQUIRE(r.ok());
  auto rc = r->open_cursor(kv);
  REQUIRE(rc.ok());
  size_t n = 0;
  std::string last;
  for (auto s = rc->first(); rc->valid(); s = rc->next()) {
    REQUIRE(s.ok());
    CHECK(std::string{rc->key()} > last);
    last = std::string{rc->key()};
    ++n;
  }
  // 5000 keys - 1 deleted + 52 "odd" + 1 long key.
  CHECK(n == keys.size() - 1 + (keys.size() + 96) / 97 + 1);
  r->abort();
  CHECK(rc->put("k", "v").code() == status_code::failed_precondition);
}

TEST_CASE("reserve hands out map space to encode into") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto log = open_db(*e, "log");
  auto st = e->write([&](txn& t) -> status {
    for (uint64_t i = 0; i < 10; ++i) {
      auto span = t.reserve(log, user_seq(7, i), 200);
      if (!span)
        return span.error();
      if (span->size != 200 || span->data == nullptr)
        return status{status_code::internal, "bad span"};
      encode_be64(span->data, i * 1000);
      std::fill(span->data + 8, span->data + 200, static_cast<char>('a' + i));
    }
    return {};
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  for (uint64_t i = 0; i < 10; ++i) {
    auto v = read(*e, log, user_seq(7, i));
    REQUIRE(v.size() == 200);
    CHECK(get_be64(v.data()) == i * 1000);
    CHECK(v.substr(8) == std::string(192, static_cast<char>('a' + i)));
  }
  auto dup = e->write([&](txn& t) {
    return t.reserve(log, user_seq(7, 0), 8, put_flags::no_overwrite).error();
  });
  CHECK(dup.code() == status_code::already_exists);
}

TEST_CASE("write grows a full map and the size persists") {
  temp_dir tmp;
  const uint64_t max = 4 * 1024 * 1024;
  const std::string body(200, 'm');
  int calls = 0;
  uint64_t grown = 0;
  {
    auto e = open_env(tmp.path, tiny_map(max));
    CHECK(e->map_size() == 64 * 1024);
    auto log = open_db(*e, "log");
    // 1000 x 200 bytes: about 220 KiB of pages, well above 64 KiB.
    auto st = e->write([&](txn& t) -> status {
      ++calls;
      for (uint64_t i = 0; i < 1000; ++i)
        if (auto s = t.put(log, user_seq(1, i), body); !s.ok())
          return s;
      return {};
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    CHECK(calls > 1); // ran again after growing
    auto s = e->stats();
    REQUIRE(s.ok());
    CHECK(s->map_size > 64 * 1024);
    CHECK(s->map_size <= max);
    CHECK(s->grows >= 2);
    CHECK(s->used_bytes > 200 * 1000);
    grown = s->map_size;
    auto t = e->begin_read();
    REQUIRE(t.ok());
    CHECK(*t->entries(log) == 1000);
  }
  auto e = open_env(tmp.path, tiny_map(max));
  CHECK(e->map_size() == grown); // not shrunk back to map_size
  auto log = open_db(*e, "log");
  CHECK(read(*e, log, user_seq(1, 999)) == body);
}

TEST_CASE("a full map at max_map_size is resource_exhausted") {
  temp_dir tmp;
  const uint64_t max = 256 * 1024;
  auto e = open_env(tmp.path, tiny_map(max));
  auto log = open_db(*e, "log");
  const std::string body(1000, 'x');
  uint64_t stored = 0;
  status st;
  // Commit small batches until the database is full.
  for (uint64_t batch = 0; batch < 1000 && st.ok(); ++batch) {
    st = e->write([&](txn& t) -> status {
      for (uint64_t i = 0; i < 10; ++i)
        if (auto s = t.put(log, be64(batch * 10 + i), body); !s.ok())
          return s;
      return {};
    });
    if (st.ok())
      stored += 10;
  }
  REQUIRE(!st.ok());
  CHECK(st.code() == status_code::resource_exhausted);
  CHECK(st.message().find("full") != std::string::npos);
  CHECK(st.message().find("max_map_size") != std::string::npos);
  CHECK(st.message().find(e->path()) != std::string::npos);
  CHECK(e->map_size() == max);
  CHECK(stored > 100);
  // What was committed is intact, the failed batch left nothing behind.
  auto t = e->begin_read();
  REQUIRE(t.ok());
  CHECK(*t->entries(log) == stored);
  t->abort();
  CHECK(e->grow().code() == status_code::resource_exhausted);
  // Deleting makes room again.
  // At the limit even deletions may need pages LMDB does not have. What
  // helps is what the message says: a larger max_map_size.
  e.reset();
  e = open_env(tmp.path, tiny_map(2 * max));
  log = open_db(*e, "log");
  auto put = e->write([&](txn& w) -> status {
    if (auto s = w.del(log, be64(0)); !s.ok())
      return s;
    return w.put(log, be64(uint64_t{1} << 40), body);
  });
  CHECK_MESSAGE(put.ok(), put.to_string());
  CHECK(e->map_size() == 2 * max);
}

TEST_CASE("growing waits for open transactions, then gives up") {
  temp_dir tmp;
  auto o = tiny_map(4 * 1024 * 1024);
  o.grow_timeout = std::chrono::milliseconds{50};
  auto e = open_env(tmp.path, o);
  auto log = open_db(*e, "log");
  auto r = e->begin_read();
  REQUIRE(r.ok());
  auto st = e->grow();
  CHECK(st.code() == status_code::unavailable);
  CHECK(st.message().find("stayed open") != std::string::npos);
  CHECK(e->map_size() == 64 * 1024);
  r->abort();
  REQUIRE(e->grow().ok());
  CHECK(e->map_size() == 128 * 1024);
  CHECK(read(*e, log, "x") == "<absent>"); // new txns still work
}

TEST_CASE("readers on other threads are safe while the map grows") {
  temp_dir tmp;
  auto e = open_env(tmp.path, tiny_map(8 * 1024 * 1024));
  auto log = open_db(*e, "log");
  const std::string body(200, 'r');
  REQUIRE(e->write([&](txn& t) { return t.put(log, be64(0), body); }).ok());
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i)
    readers.emplace_back([&] {
      while (!done.load()) {
        auto t = e->begin_read();
        if (!t) {
          ++bad;
          continue;
        }
        auto v = t->get(log, be64(0));
        // Touch every byte: a stale mapping would crash or differ here.
        if (!v || !*v || **v != body)
          ++bad;
        ++reads;
      }
    });
  // Both readers are inside their loop before the map grows (on a fast
  // machine the 100 batches could end before a thread was scheduled).
  while (reads.load() < 2)
    std::this_thread::yield();
  uint64_t next = 1;
  status st;
  for (int batch = 0; batch < 100 && st.ok(); ++batch)
    st = e->write([&](txn& t) -> status {
      uint64_t k = next;
      for (int i = 0; i < 100; ++i)
        if (auto s = t.put(log, be64(k++), body); !s.ok())
          return s;
      next = k;
      return {};
    });
  done = true;
  for (auto& th : readers)
    th.join();
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  CHECK(bad.load() == 0);
  CHECK(reads.load() > 0);
  CHECK(e->stats()->grows >= 5);
  CHECK(read(*e, log, be64(next - 1)) == body);
}

TEST_CASE("format versions are written, accepted and refused") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto meta = open_db(*e, "meta");
  uint32_t stored = 0;
  auto check = [&](uint32_t current) {
    return e->write([&](txn& t) {
      return check_format(t, meta, "format", current, &stored);
    });
  };
  REQUIRE(check(2).ok());
  CHECK(stored == 2);
  CHECK(read(*e, meta, "format") == std::string("\0\0\0\2", 4));
  REQUIRE(check(2).ok());
  CHECK(stored == 2);
  // A newer build opens older data and sees its version (to migrate).
  REQUIRE(check(3).ok());
  CHECK(stored == 2);
  CHECK(read(*e, meta, "format") == std::string("\0\0\0\2", 4));
  REQUIRE(
    e->write([&](txn& t) { return set_format(t, meta, "format", 5); }).ok());
  auto st = check(3);
  CHECK(st.code() == status_code::version_mismatch);
  CHECK(stored == 5);
  CHECK(st.message().find("data directory " + e->path() + " has format 5") !=
        std::string::npos);
  CHECK(st.message().find("up to 3") != std::string::npos);
  CHECK(st.message().find("upgrade") != std::string::npos);
  // Read-only check of an existing record works in a read txn.
  auto r = e->begin_read();
  REQUIRE(r.ok());
  CHECK(check_format(*r, meta, "format", 5).ok());
  r->abort();
  REQUIRE(e->write([&](txn& t) { return t.put(meta, "format", "abc"); }).ok());
  CHECK(check(3).code() == status_code::corruption);
}

TEST_CASE("stale readers of dead processes are cleared") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  REQUIRE(e->write([&](txn& t) { return t.put(kv, "k", "v"); }).ok());
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A separate process: raw LMDB, then die holding a read txn.
    MDB_env* raw = nullptr;
    MDB_txn* t = nullptr;
    if (mdb_env_create(&raw) != 0 || mdb_env_set_maxdbs(raw, 32) != 0 ||
        mdb_env_open(raw, tmp.path.c_str(), MDB_NOTLS, 0600) != 0 ||
        mdb_txn_begin(raw, nullptr, MDB_RDONLY, &t) != 0)
      _exit(1);
    _exit(0);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
  auto n = e->reader_check();
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(*e->reader_check() == 0);
  CHECK(read(*e, kv, "k") == "v");
  // After a reopen, read transactions work from the first call.
  e.reset();
  e = open_env(tmp.path);
  kv = open_db(*e, "kv");
  CHECK(read(*e, kv, "k") == "v");
  CHECK(e->stats()->stale_readers_cleared == 0);
}

TEST_CASE("a map grown by another process is adopted") {
  temp_dir tmp;
  auto e = open_env(tmp.path, tiny_map(64 * 1024));
  auto kv = open_db(*e, "kv");
  const uint64_t big = 4 * 1024 * 1024;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Another process (raw LMDB) writes 800 KB with a 4 MiB map.
    MDB_env* raw = nullptr;
    MDB_txn* t = nullptr;
    MDB_dbi db = 0;
    if (mdb_env_create(&raw) != 0 || mdb_env_set_maxdbs(raw, 32) != 0 ||
        mdb_env_set_mapsize(raw, big) != 0 ||
        mdb_env_open(raw, tmp.path.c_str(), MDB_NOTLS, 0600) != 0 ||
        mdb_txn_begin(raw, nullptr, 0, &t) != 0 ||
        mdb_dbi_open(t, "kv", 0, &db) != 0)
      _exit(1);
    std::string body(400, 'p');
    for (uint64_t i = 0; i < 2000; ++i) {
      auto k = be64(i);
      MDB_val key{k.size(), k.data()};
      MDB_val val{body.size(), body.data()};
      if (mdb_put(t, db, &key, &val, 0) != 0)
        _exit(2);
    }
    if (mdb_txn_commit(t) != 0)
      _exit(3);
    mdb_env_close(raw);
    _exit(0);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
  CHECK(e->map_size() == 64 * 1024);
  CHECK(read(*e, kv, be64(1999)) == std::string(400, 'p'));
  CHECK(e->map_size() == big);
}

TEST_CASE("the reader table limit is resource_exhausted") {
  temp_dir tmp;
  env_options o;
  o.max_readers = 4;
  auto e = open_env(tmp.path, o);
  std::vector<txn> open;
  status st;
  for (int i = 0; i < 10; ++i) {
    auto t = e->begin_read();
    if (!t) {
      st = t.error();
      break;
    }
    open.push_back(std::move(*t));
  }
  CHECK(open.size() == 4);
  CHECK(st.code() == status_code::resource_exhausted);
  CHECK(st.message().find("max_readers") != std::string::npos);
  open.clear(); // frees the slots
  CHECK(e->begin_read().ok());
}

TEST_CASE("delete_prefix deletes the keys with the prefix, and only those") {
  temp_dir tmp;
  auto e = open_env(tmp.path);
  auto kv = open_db(*e, "kv");
  auto st = e->write([&](txn& t) -> status {
    for (auto k : {"a", "ab1", "ab2", "ab3", "abc", "b"})
      if (auto s = t.put(kv, k, "v"); !s)
        return s;
    if (auto s = delete_prefix(t, kv, "ab"); !s)
      return s;
    return delete_prefix(t, kv, "zz"); // nothing: not an error
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  CHECK(read(*e, kv, "a") == "v");
  CHECK(read(*e, kv, "b") == "v");
  for (auto k : {"ab1", "ab2", "ab3", "abc"})
    CHECK(read(*e, kv, k) == "<absent>");
}
