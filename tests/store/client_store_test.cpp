// The client SDK's local database: device id, ids, outbox and statuses,
// incoming dedup, the cursor, conversation pages, summary and unread counts,
// removal, key/value and the format check. Pure store tests: time passed in.
//
// Every behaviour both backends share is a TEST_CASE_TEMPLATE over
// lmdb_backend and memory_backend; on the memory backend fixture::reopen()
// keeps the same store, so the checks after a reopen still hold there.
// LMDB-only: persistence proper, the format check, map growth. Memory-only:
// eviction (memory_options) and concurrent readers and writers.

#include "store/client_store.hpp"
#include "store/client_store_detail.hpp"

#include "tests/support/temp_dir.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <optional>
#include <random>
#include <thread>

using namespace parley;
using namespace parley::store;

namespace {

constexpr uint64_t t0 = 1'800'000'000'000; // a fixed "now", ms

// codec::message_status numbers.
constexpr uint8_t st_outbox = 0x00;
constexpr uint8_t st_sent = 0x01;
constexpr uint8_t st_delivered = 0x02;
constexpr uint8_t st_read = 0x03;
constexpr uint8_t st_received_new = 0x12;
constexpr uint8_t st_received_read = 0x13;
constexpr uint8_t st_call_missed = 0x15;
constexpr uint8_t st_fail = 0x80;
constexpr uint8_t st_expired = 0x84;

env_options fast() {
  env_options o;
  o.sync = false;
  return o;
}

/// Backend tags for TEST_CASE_TEMPLATE.
struct lmdb_backend {
  static constexpr bool memory = false;
};
struct memory_backend {
  static constexpr bool memory = true;
};

struct fixture {
  bool memory;
  memory_options mem_opts;
  std::optional<test::temp_dir> dir; // LMDB only
  std::unique_ptr<client_store> db;
  uint64_t now = t0;

  explicit fixture(bool in_memory = false, memory_options mo = {})
    : memory(in_memory), mem_opts(mo) {
    if (!memory)
      dir.emplace();
    reopen();
  }

  /// LMDB: closes and opens the database again. Memory: makes the store on
  /// the first call, keeps it afterwards (nothing to reopen).
  void reopen(const env_options& opts = fast()) {
    if (memory) {
      if (!db)
        db = client_store::open_memory(mem_opts);
      return;
    }
    db.reset();
    auto s = client_store::open(dir->path(), opts);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    db = std::move(*s);
  }

  /// Stores an outgoing message to `peer` (or `group`) and returns its mid.
  uint64_t send(const std::string& peer, uint32_t group,
                const std::string& payload, uint16_t flags = 0) {
    auto id = db->next_id(now++);
    REQUIRE(id.ok());
    client_message m;
    m.id = m.mid = *id;
    m.peer = peer;
    m.group_id = group;
    m.sender = "me";
    m.outgoing = true;
    m.flags = flags;
    m.ts_ms = now;
    m.payload = payload;
    auto st = db->add_outgoing(m);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return m.mid;
  }

  /// As send, with add_new_outgoing.
  uint64_t send_new(const std::string& peer, const std::string& payload,
                    uint16_t flags = 0) {
    client_message m;
    m.peer = peer;
    m.sender = "me";
    m.outgoing = true;
    m.flags = flags;
    m.ts_ms = now;
    m.payload = payload;
    auto st = db->add_new_outgoing(m, now++);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    REQUIRE(m.id != 0);
    REQUIRE(m.id == m.mid);
    return m.mid;
  }

  bool held(uint64_t id) {
    auto m = db->get(id);
    REQUIRE(m.ok());
    return m->has_value();
  }

  /// Stores an incoming message; returns its local id (REQUIRES: new).
  uint64_t receive(const std::string& sender, uint32_t group, uint64_t seq,
                   uint64_t mid, const std::string& payload) {
    auto m = incoming(sender, group, seq, mid, payload);
    auto fresh = db->add_incoming(m);
    REQUIRE_MESSAGE(fresh.ok(), fresh.error().to_string());
    REQUIRE(*fresh);
    REQUIRE(m.id != 0);
    return m.id;
  }

  static client_message incoming(const std::string& sender, uint32_t group,
                                 uint64_t seq, uint64_t mid,
                                 const std::string& payload) {
    client_message m;
    m.mid = mid;
    m.seq = seq;
    m.sender = sender;
    if (group == 0)
      m.peer = sender;
    m.group_id = group;
    m.ts_ms = t0 + seq;
    m.status = st_received_new;
    m.payload = payload;
    return m;
  }

  client_message get(uint64_t id) {
    auto m = db->get(id);
    REQUIRE(m.ok());
    REQUIRE(m->has_value());
    return **m;
  }

  std::vector<std::string> page(const std::string& peer, uint32_t group,
                                uint64_t from, size_t count, read_order o) {
    auto r = db->read(peer, group, from, count, o);
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    std::vector<std::string> out;
    for (auto& m : *r)
      out.push_back(m.payload);
    return out;
  }

  std::vector<uint64_t> outbox_mids() {
    auto r = db->outbox();
    REQUIRE(r.ok());
    std::vector<uint64_t> out;
    for (auto& m : *r)
      out.push_back(m.mid);
    return out;
  }

  std::vector<conversation_summary> summary() {
    auto r = db->summary();
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    return *r;
  }
};

using strings = std::vector<std::string>;

} // namespace

TYPE_TO_STRING(lmdb_backend);
TYPE_TO_STRING(memory_backend);

TEST_CASE_TEMPLATE("the device id is made once and survives a reopen", B,
                   lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto id = f.db->device_id();
  REQUIRE(id.ok());
  CHECK(id->size() == 32);
  CHECK(std::all_of(id->begin(), id->end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) ||
           (c >= 'a' && c <= 'f');
  }));
  CHECK(*f.db->device_id() == *id);
  f.reopen();
  CHECK(*f.db->device_id() == *id);
  fixture other{B::memory};
  CHECK(*other.db->device_id() != *id);
}

TEST_CASE_TEMPLATE("next_id increases strictly, across reopens and clock jumps",
                   B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto a = f.db->next_id(t0);
  REQUIRE(a.ok());
  CHECK(*a == t0 << 20);
  auto b = f.db->next_id(t0); // same millisecond: the counter part
  CHECK(*b == *a + 1);
  auto c = f.db->next_id(t0 + 5);
  CHECK(*c == (t0 + 5) << 20);
  f.reopen();
  auto d = f.db->next_id(t0 - 60'000); // the clock went back a minute
  REQUIRE(d.ok());
  CHECK(*d == *c + 1);
  auto e = f.db->next_id(0);
  CHECK(*e == *d + 1);
  fixture fresh{B::memory};
  CHECK(*fresh.db->next_id(0) == 1); // never 0
}

TEST_CASE_TEMPLATE("outgoing messages queue in the outbox until a status", B,
                   lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto m1 = f.send("bob", 0, "one");
  auto m2 = f.send("bob", 0, "two");
  auto m3 = f.send("", 7, "three");
  CHECK(f.outbox_mids() == std::vector<uint64_t>{m1, m2, m3});
  auto stored = f.get(m1);
  CHECK(stored.status == st_outbox);
  CHECK(stored.outgoing);
  CHECK(stored.payload == "one");

  // OUTBOX again is no move and keeps it queued.
  auto same = f.db->set_status(m1, st_outbox);
  REQUIRE(same.ok());
  CHECK(same->status == st_outbox);
  CHECK(f.outbox_mids().size() == 3);

  // The immediate SENT (seq 0) takes it out; the own record's SENT, equal,
  // still records the seq and the server time.
  auto sent = f.db->set_status(m2, st_sent, 0, t0 + 100);
  REQUIRE(sent.ok());
  CHECK(sent->status == st_sent);
  CHECK(sent->ts_ms == t0 + 100);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{m1, m3});
  sent = f.db->set_status(m2, st_sent, 41, t0 + 100);
  REQUIRE(sent.ok());
  CHECK(sent->status == st_sent);
  CHECK(sent->seq == 41);
  CHECK(f.get(m2).seq == 41);

  // status_of: the status alone; nullopt for an id not held.
  REQUIRE(f.db->status_of(m2).ok());
  CHECK(*f.db->status_of(m2) == std::optional<uint8_t>{st_sent});
  CHECK(*f.db->status_of(m1) == std::optional<uint8_t>{st_outbox});
  CHECK(*f.db->status_of(m3 + 1000) == std::nullopt);

  // `before` gets the status the message had, moved or not.
  uint8_t before = 0xff;
  CHECK(f.db->set_status(m2, st_delivered, 0, 0, &before)->status ==
        st_delivered);
  CHECK(before == st_sent);
  before = 0xff;
  CHECK(f.db->set_status(m2, st_sent, 0, 0, &before)->status == st_delivered);
  CHECK(before == st_delivered);
  CHECK(*f.db->status_of(m2) == std::optional<uint8_t>{st_delivered});

  // Forward only.
  CHECK(f.db->set_status(m2, st_read)->status == st_read);
  CHECK(f.db->set_status(m2, st_delivered)->status == st_read);
  CHECK(f.db->set_status(m2, st_sent)->status == st_read);
  CHECK(f.db->set_status(m2, st_outbox)->status == st_read);
  CHECK(f.db->set_status(m2, st_expired)->status == st_read);
  CHECK(f.get(m2).status == st_read);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{m1, m3});

  // A failure replaces OUTBOX (and leaves the outbox) and SENT, and stays.
  CHECK(f.db->set_status(m1, st_fail)->status == st_fail);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{m3});
  CHECK(f.db->set_status(m1, st_sent)->status == st_fail);
  CHECK(f.db->set_status(m3, st_sent)->status == st_sent);
  CHECK(f.db->set_status(m3, st_expired)->status == st_expired);
  CHECK(f.db->set_status(m3, st_delivered)->status == st_expired);
  CHECK(f.get(m3).status == st_expired);
  CHECK(f.outbox_mids().empty());

  // Statuses persist.
  f.reopen();
  CHECK(f.get(m1).status == st_fail);
  CHECK(f.get(m2).status == st_read);
  CHECK(f.outbox_mids().empty());
}

TEST_CASE_TEMPLATE("set_status and add_outgoing refuse what is wrong", B,
                   lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto mid = f.send("bob", 0, "x");
  auto none = f.db->set_status(mid + 1000, st_sent);
  REQUIRE(!none.ok());
  CHECK(none.error().code() == status_code::not_found);
  auto bad = f.db->set_status(mid, st_received_new);
  REQUIRE(!bad.ok());
  CHECK(bad.error().code() == status_code::invalid_argument);

  // An incoming message is not an outgoing one, even by its local id.
  auto in = f.receive("carol", 0, 5, 77, "hi");
  auto wrong = f.db->set_status(in, st_sent);
  REQUIRE(!wrong.ok());
  CHECK(wrong.error().code() == status_code::not_found);

  client_message m;
  m.outgoing = true;
  m.peer = "bob";
  m.id = 5;
  m.mid = 6;
  CHECK(f.db->add_outgoing(m).code() == status_code::invalid_argument);
  m.id = m.mid = 0;
  CHECK(f.db->add_outgoing(m).code() == status_code::invalid_argument);
  m.id = m.mid = mid;
  CHECK(f.db->add_outgoing(m).code() == status_code::already_exists);
  m.id = m.mid = *f.db->next_id(t0);
  m.outgoing = false;
  CHECK(f.db->add_outgoing(m).code() == status_code::invalid_argument);
  m.outgoing = true;
  m.group_id = 3; // both a peer and a group
  CHECK(f.db->add_outgoing(m).code() == status_code::invalid_argument);
  m.peer.clear();
  m.group_id = 0; // neither
  CHECK(f.db->add_outgoing(m).code() == status_code::invalid_argument);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{mid});

  // A mid made elsewhere is accepted as given, queued as OUTBOX whatever
  // the status it came with, and ids continue above it.
  uint64_t far = (t0 + 3'600'000) << 20;
  m.id = m.mid = far;
  m.peer = "bob";
  m.status = st_delivered;
  REQUIRE(f.db->add_outgoing(m).ok());
  CHECK(f.get(far).status == st_outbox);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{mid, far});
  CHECK(f.receive("bob", 0, 6, 78, "later") == far + 1);
  CHECK(*f.db->next_id(t0) == far + 2);
}

TEST_CASE_TEMPLATE(
  "incoming messages are deduplicated by seq and by (sender, mid)", B,
  lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto out = f.send("bob", 0, "mine");
  auto m = fixture::incoming("bob", 0, 10, 500, "hello");
  m.kind = 3;
  m.flags = 0x3;
  m.expiry_s = 600;
  m.in_reply_to = out;
  auto fresh = f.db->add_incoming(m);
  REQUIRE(fresh.ok());
  CHECK(*fresh);
  auto id = m.id;
  CHECK(id > out); // one id space, above every mid handed out

  // Everything round-trips.
  auto got = f.get(id);
  CHECK(got.id == id);
  CHECK(got.mid == 500);
  CHECK(got.seq == 10);
  CHECK(got.peer == "bob");
  CHECK(got.group_id == 0);
  CHECK(got.sender == "bob");
  CHECK(!got.outgoing);
  CHECK(got.kind == 3);
  CHECK(got.flags == 0x3);
  CHECK(got.expiry_s == 600);
  CHECK(got.in_reply_to == out);
  CHECK(got.ts_ms == t0 + 10);
  CHECK(got.status == st_received_new);
  CHECK(!got.read);
  CHECK(got.payload == "hello");

  // Same seq, other content: a duplicate, answered with the stored id.
  auto again = fixture::incoming("bob", 0, 10, 999, "other");
  auto r = f.db->add_incoming(again);
  REQUIRE(r.ok());
  CHECK(!*r);
  CHECK(again.id == id);

  // Same (sender, mid) without a seq (real-time) or with another seq.
  auto rt = fixture::incoming("bob", 0, 0, 500, "hello");
  r = f.db->add_incoming(rt);
  REQUIRE(r.ok());
  CHECK(!*r);
  CHECK(rt.id == id);
  auto later = fixture::incoming("bob", 0, 11, 500, "hello");
  r = f.db->add_incoming(later);
  REQUIRE(r.ok());
  CHECK(!*r);

  // Same mid from another sender is another message.
  auto carol = fixture::incoming("carol", 0, 12, 500, "hi");
  r = f.db->add_incoming(carol);
  REQUIRE(r.ok());
  CHECK(*r);
  CHECK(carol.id > id);

  // A real-time message is deduplicated by (sender, mid) alone.
  auto rt2 = fixture::incoming("dave", 0, 0, 1, "ping");
  CHECK(*f.db->add_incoming(rt2));
  auto rt3 = fixture::incoming("dave", 0, 0, 1, "ping");
  CHECK(!*f.db->add_incoming(rt3));
  CHECK(rt3.id == rt2.id);

  // The dedup survives a reopen, and the own record of a sent message (its
  // seq learnt from SENT) is not stored twice when it comes back in a sync.
  REQUIRE(f.db->set_status(out, st_sent, 9, t0).ok());
  f.reopen();
  auto dup = fixture::incoming("bob", 0, 10, 500, "hello");
  CHECK(!*f.db->add_incoming(dup));
  auto own = fixture::incoming("me", 0, 9, 12345, "mine");
  own.peer = "bob";
  own.outgoing = true;
  r = f.db->add_incoming(own);
  REQUIRE(r.ok());
  CHECK(!*r);
  CHECK(own.id == out);
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"mine", "hello"});

  client_message nosender = fixture::incoming("", 0, 20, 1, "x");
  nosender.peer = "bob";
  CHECK(f.db->add_incoming(nosender).error().code() ==
        status_code::invalid_argument);
}

TEST_CASE_TEMPLATE("one mid from several senders: each found until removed", B,
                   lmdb_backend, memory_backend) {
  fixture f{B::memory};
  std::vector<uint64_t> ids;
  for (std::string s : {"bob", "carol", "dave"}) {
    auto m = fixture::incoming(s, 0, 0, 77, "hi from " + s);
    auto r = f.db->add_incoming(m);
    REQUIRE(r.ok());
    CHECK(*r);
    ids.push_back(m.id);
  }
  // The first one indexed goes: the others are still recognised.
  REQUIRE(f.db->remove(ids[0]).ok());
  for (size_t i : {1, 2}) {
    auto again = fixture::incoming(i == 1 ? "carol" : "dave", 0, 0, 77, "x");
    auto r = f.db->add_incoming(again);
    REQUIRE(r.ok());
    CHECK(!*r);
    CHECK(again.id == ids[i]);
  }
  // A middle one goes: the last is still recognised, and bob's is new now.
  REQUIRE(f.db->remove(ids[1]).ok());
  auto d = fixture::incoming("dave", 0, 0, 77, "x");
  REQUIRE(f.db->add_incoming(d).ok());
  CHECK(d.id == ids[2]);
  auto b = fixture::incoming("bob", 0, 0, 77, "back");
  auto r = f.db->add_incoming(b);
  REQUIRE(r.ok());
  CHECK(*r);
  CHECK(f.get(b.id).payload == "back");
}

TEST_CASE_TEMPLATE("the cursor only rises and persists", B, lmdb_backend,
                   memory_backend) {
  fixture f{B::memory};
  CHECK(*f.db->cursor() == 0);
  REQUIRE(f.db->set_cursor(10).ok());
  CHECK(*f.db->cursor() == 10);
  REQUIRE(f.db->set_cursor(4).ok());
  CHECK(*f.db->cursor() == 10);
  REQUIRE(f.db->set_cursor(12).ok());
  f.reopen();
  CHECK(*f.db->cursor() == 12);
  REQUIRE(f.db->set_cursor(0).ok());
  CHECK(*f.db->cursor() == 12);
  // Storing a message does not move it: the SDK acks what it processed.
  f.receive("bob", 0, 40, 1, "x");
  CHECK(*f.db->cursor() == 12);
}

TEST_CASE_TEMPLATE(
  "conversation pages, both directions, conversations kept apart", B,
  lmdb_backend, memory_backend) {
  fixture f{B::memory};
  // bob, bobby (a longer name with bob as prefix) and group 7 interleaved.
  std::vector<uint64_t> bob;
  bob.push_back(f.receive("bob", 0, 1, 1, "b1"));
  f.receive("bobby", 0, 2, 1, "y1");
  bob.push_back(f.send("bob", 0, "b2"));
  f.receive("alice", 7, 3, 1, "g1");
  bob.push_back(f.receive("bob", 0, 4, 2, "b3"));
  f.send("", 7, "g2");
  bob.push_back(f.send("bob", 0, "b4"));
  f.receive("bobby", 0, 5, 2, "y2");
  bob.push_back(f.receive("bob", 0, 6, 3, "b5"));
  f.receive("carol", 7, 7, 1, "g3");
  f.receive("alice", 8, 8, 2, "other group");

  auto nf = read_order::newest_first;
  auto of = read_order::oldest_first;
  CHECK(f.page("bob", 0, 0, 100, nf) == strings{"b5", "b4", "b3", "b2", "b1"});
  CHECK(f.page("bob", 0, 0, 100, of) == strings{"b1", "b2", "b3", "b4", "b5"});

  // Paging: from_id is the last id of the previous page, excluded.
  CHECK(f.page("bob", 0, 0, 2, nf) == strings{"b5", "b4"});
  CHECK(f.page("bob", 0, bob[3], 2, nf) == strings{"b3", "b2"});
  CHECK(f.page("bob", 0, bob[1], 2, nf) == strings{"b1"});
  CHECK(f.page("bob", 0, bob[0], 2, nf).empty());
  CHECK(f.page("bob", 0, 0, 2, of) == strings{"b1", "b2"});
  CHECK(f.page("bob", 0, bob[1], 2, of) == strings{"b3", "b4"});
  CHECK(f.page("bob", 0, bob[3], 2, of) == strings{"b5"});
  CHECK(f.page("bob", 0, bob[4], 2, of).empty());
  CHECK(f.page("bob", 0, 0, 0, nf).empty());

  CHECK(f.page("bobby", 0, 0, 10, nf) == strings{"y2", "y1"});
  CHECK(f.page("", 7, 0, 10, nf) == strings{"g3", "g2", "g1"});
  CHECK(f.page("", 7, 0, 10, of) == strings{"g1", "g2", "g3"});
  CHECK(f.page("", 8, 0, 10, of) == strings{"other group"});
  CHECK(f.page("bo", 0, 0, 10, of).empty());
  CHECK(f.page("alice", 0, 0, 10, of).empty()); // alice only wrote in groups
  CHECK(f.page("", 9, 0, 10, of).empty());

  auto both = f.db->read("bob", 7, 0, 10, nf);
  REQUIRE(!both.ok());
  CHECK(both.error().code() == status_code::invalid_argument);
}

TEST_CASE_TEMPLATE("summary, unread counts and mark_read", B, lmdb_backend,
                   memory_backend) {
  fixture f{B::memory};
  CHECK(f.summary().empty());
  auto b1 = f.receive("bob", 0, 11, 1, "b1");
  auto b2 = f.receive("bob", 0, 12, 2, "b2");
  f.receive("alice", 7, 13, 1, "g1");
  auto c1 = f.receive("carol", 0, 14, 1, "c1");
  auto b3 = f.receive("bob", 0, 0, 3, "b3"); // real-time: no seq
  f.send("carol", 0, "c2");
  auto call = fixture::incoming("bob", 0, 15, 4, "call");
  call.status = st_call_missed;
  REQUIRE(*f.db->add_incoming(call));
  // An outgoing copy from another device of this user: not unread.
  auto copy = fixture::incoming("me", 0, 16, 900, "from my phone");
  copy.peer = "dave";
  copy.outgoing = true;
  copy.status = st_sent;
  REQUIRE(*f.db->add_incoming(copy));

  // dave (newest), bob (call), carol (c2 sent), group 7.
  auto s = f.summary();
  REQUIRE(s.size() == 4);
  CHECK(s[0].peer == "dave");
  CHECK(s[0].unread == 0);
  CHECK(s[0].last.payload == "from my phone");
  CHECK(s[1].peer == "bob");
  CHECK(s[1].group_id == 0);
  CHECK(s[1].last.id == call.id);
  CHECK(s[1].unread == 4);
  CHECK(s[2].peer == "carol");
  CHECK(s[2].last.payload == "c2");
  CHECK(s[2].unread == 1);
  CHECK(s[3].peer.empty());
  CHECK(s[3].group_id == 7);
  CHECK(s[3].last.payload == "g1");
  CHECK(s[3].unread == 1);

  // Up to b2: the highest seq marked is b2's.
  auto hi = f.db->mark_read("bob", 0, b2);
  REQUIRE(hi.ok());
  CHECK(*hi == 12);
  CHECK(f.get(b1).read);
  CHECK(f.get(b1).status == st_received_read);
  CHECK(f.get(b2).read);
  CHECK(!f.get(b3).read);
  CHECK(f.get(b3).status == st_received_new);
  CHECK(f.summary()[1].unread == 2);
  // Again: nothing new to mark.
  CHECK(*f.db->mark_read("bob", 0, b2) == 0);
  // The rest: b3 has no seq, the missed call has 15 and keeps its status.
  CHECK(*f.db->mark_read("bob", 0) == 15);
  CHECK(f.get(b3).read);
  CHECK(f.get(b3).status == st_received_read);
  CHECK(f.get(call.id).read);
  CHECK(f.get(call.id).status == st_call_missed);
  CHECK(f.summary()[1].unread == 0);
  CHECK(*f.db->mark_read("bob", 0) == 0);

  // Other conversations are untouched; a group is marked by its id.
  CHECK(f.summary()[2].unread == 1);
  CHECK(*f.db->mark_read("", 7) == 13);
  CHECK(f.summary()[3].unread == 0);
  CHECK(!f.get(c1).read);
  CHECK(*f.db->mark_read("nobody", 0) == 0);

  // A new message moves its conversation to the top and counts as unread.
  f.receive("alice", 7, 17, 2, "g2");
  f.reopen();
  s = f.summary();
  REQUIRE(s.size() == 4);
  CHECK(s[0].group_id == 7);
  CHECK(s[0].last.payload == "g2");
  CHECK(s[0].unread == 1);
  CHECK(s[1].peer == "dave");
}

TEST_CASE_TEMPLATE("remove deletes a message and its traces", B, lmdb_backend,
                   memory_backend) {
  fixture f{B::memory};
  auto b1 = f.receive("bob", 0, 1, 1, "b1");
  auto mine = f.send("bob", 0, "mine");
  auto b2 = f.receive("bob", 0, 2, 2, "b2");
  auto c1 = f.receive("carol", 0, 3, 1, "c1");

  auto none = f.db->remove(c1 + 1000);
  CHECK(none.code() == status_code::not_found);

  // The last message of bob: the summary falls back to the one before and
  // the unread count drops.
  REQUIRE(f.db->remove(b2).ok());
  CHECK(!f.db->get(b2)->has_value());
  auto s = f.summary();
  REQUIRE(s.size() == 2);
  CHECK(s[0].peer == "carol");
  CHECK(s[1].peer == "bob");
  CHECK(s[1].last.id == mine);
  CHECK(s[1].unread == 1);
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"b1", "mine"});

  // An outgoing message leaves the outbox; a message in the middle leaves
  // the last one in place.
  REQUIRE(f.db->remove(mine).ok());
  CHECK(f.outbox_mids().empty());
  REQUIRE(f.db->remove(c1).ok());
  s = f.summary();
  REQUIRE(s.size() == 1);
  CHECK(s[0].last.id == b1);

  // The only message: the conversation is gone.
  REQUIRE(f.db->remove(b1).ok());
  CHECK(f.summary().empty());
  CHECK(f.page("bob", 0, 0, 10, read_order::newest_first).empty());

  // Its dedup entries went too: the same message may be stored again.
  auto back = fixture::incoming("bob", 0, 2, 2, "b2");
  auto r = f.db->add_incoming(back);
  REQUIRE(r.ok());
  CHECK(*r);
  CHECK(back.id > c1);
  s = f.summary();
  REQUIRE(s.size() == 1);
  CHECK(s[0].unread == 1);
}

TEST_CASE_TEMPLATE("key/value", B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  CHECK(!f.db->kv_get("token")->has_value());
  REQUIRE(f.db->kv_put("token", "abc").ok());
  REQUIRE(f.db->kv_put("user", std::string("a\0b", 3)).ok());
  CHECK(**f.db->kv_get("token") == "abc");
  REQUIRE(f.db->kv_put("token", "").ok());
  f.reopen();
  CHECK(f.db->kv_get("token")->has_value());
  CHECK(**f.db->kv_get("token") == "");
  CHECK(**f.db->kv_get("user") == std::string("a\0b", 3));
  CHECK(f.db->kv_put("", "x").code() == status_code::invalid_argument);
  CHECK(f.db->kv_get("").error().code() == status_code::invalid_argument);
  CHECK(f.db->kv_put(std::string(600, 'k'), "x").code() ==
        status_code::invalid_argument);
}

TEST_CASE("a newer on-disk format is refused") {
  test::temp_dir dir;
  {
    auto s = client_store::open(dir.path(), fast());
    REQUIRE(s.ok());
  }
  {
    auto e = env::open(dir.path(), fast());
    REQUIRE(e.ok());
    auto meta = (*e)->open_dbi("meta");
    REQUIRE(meta.ok());
    REQUIRE((*e)
              ->write([&](txn& t) {
                return set_format(t, *meta, "format",
                                  client_format_version + 1);
              })
              .ok());
  }
  auto again = client_store::open(dir.path(), fast());
  REQUIRE(!again.ok());
  CHECK(again.error().code() == status_code::version_mismatch);
}

TEST_CASE("writes grow the map and rerun cleanly") {
  test::temp_dir dir;
  auto opts = fast();
  opts.map_size = 256 * 1024;
  opts.max_map_size = 64 << 20;
  auto s = client_store::open(dir.path(), opts);
  REQUIRE(s.ok());
  auto& db = **s;
  std::string payload(2000, 'p');
  uint64_t prev = 0;
  for (uint64_t i = 1; i <= 600; ++i) {
    auto m = fixture::incoming(i % 2 ? "bob" : "carol", 0, i, i, payload);
    auto r = db.add_incoming(m);
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    REQUIRE(*r);
    REQUIRE(m.id > prev);
    prev = m.id;
  }
  auto sum = db.summary();
  REQUIRE(sum.ok());
  REQUIRE(sum->size() == 2);
  CHECK(sum->at(0).peer == "carol");
  CHECK(sum->at(0).unread == 300);
  CHECK(sum->at(1).unread == 300);
  auto page = db.read("bob", 0, 0, 1000, read_order::oldest_first);
  REQUIRE(page.ok());
  CHECK(page->size() == 300);
}

TEST_CASE_TEMPLATE(
  "requeue: a failed message goes back to the outbox, a sent one not", B,
  lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto& s = *f.db;
  parley::store::client_message m;
  m.id = m.mid = 42;
  m.outgoing = true;
  m.peer = "bob";
  m.sender = "alice";
  REQUIRE(s.add_outgoing(m).ok());
  REQUIRE(s.set_status(42, 0x83).ok()); // INVALIDDEST
  CHECK(s.outbox()->empty());
  CHECK(s.set_status(42, 0x01)->status == 0x83); // failures are final...
  auto back = s.requeue(42);                     // ...but for a resend
  REQUIRE(back.ok());
  CHECK(back->status == 0x00);
  CHECK(s.outbox()->size() == 1);
  CHECK(s.set_status(42, 0x01)->status == 0x01);
  CHECK(s.requeue(42).error().code() ==
        parley::status_code::failed_precondition);
  CHECK(s.requeue(7).error().code() == parley::status_code::not_found);
}

// -- add_new_outgoing (both backends)
// ---------------------------------------------------------

TEST_CASE_TEMPLATE("add_new_outgoing takes the next id and queues the message "
                   "in one step",
                   B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  client_message m;
  m.id = m.mid = 99;       // ignored: the store assigns them
  m.status = st_delivered; // ignored: queued as OUTBOX
  m.peer = "bob";
  m.sender = "me";
  m.outgoing = true;
  m.kind = 2;
  m.flags = 0x3;
  m.ts_ms = t0;
  m.payload = "one";
  REQUIRE(f.db->add_new_outgoing(m, t0).ok());
  auto a = m.id;
  CHECK(a == t0 << 20); // next_id's rule
  CHECK(m.mid == a);
  CHECK(m.status == st_outbox);
  auto stored = f.get(a);
  CHECK(stored.mid == a);
  CHECK(stored.outgoing);
  CHECK(stored.status == st_outbox);
  CHECK(stored.kind == 2);
  CHECK(stored.flags == 0x3);
  CHECK(stored.peer == "bob");
  CHECK(stored.payload == "one");

  // Strictly increasing, in step with next_id, whatever the clock does.
  auto m2 = m;
  m2.payload = "two";
  REQUIRE(f.db->add_new_outgoing(m2, t0).ok()); // same millisecond
  CHECK(m2.id == a + 1);
  CHECK(*f.db->next_id(t0) == a + 2);
  auto m3 = m;
  m3.payload = "three";
  REQUIRE(f.db->add_new_outgoing(m3, t0 - 60'000).ok()); // clock went back
  CHECK(m3.id == a + 3);
  auto m4 = m;
  m4.payload = "four";
  REQUIRE(f.db->add_new_outgoing(m4, t0 + 2).ok());
  CHECK(m4.id == (t0 + 2) << 20);

  // Queued in order, shown in the conversation, updated like any other.
  CHECK(f.outbox_mids() == std::vector<uint64_t>{a, a + 1, a + 3, m4.id});
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"one", "two", "three", "four"});
  CHECK(f.db->set_status(a, st_sent, 5, t0 + 1)->status == st_sent);
  CHECK(f.outbox_mids() == std::vector<uint64_t>{a + 1, a + 3, m4.id});
  // One id space; an incoming id is time-based on the server's stamp.
  auto in_id = f.receive("bob", 0, 6, 1, "in");
  CHECK(in_id == (t0 + 6) << 20);

  // Refusals leave `m` as it was and use up no id.
  client_message bad = m;
  bad.id = bad.mid = 7;
  bad.outgoing = false;
  CHECK(f.db->add_new_outgoing(bad, t0).code() ==
        status_code::invalid_argument);
  CHECK(bad.id == 7);
  CHECK(bad.mid == 7);
  bad.outgoing = true;
  bad.group_id = 3; // both a peer and a group
  CHECK(f.db->add_new_outgoing(bad, t0).code() ==
        status_code::invalid_argument);
  bad.group_id = 0;
  bad.peer.clear(); // neither
  CHECK(f.db->add_new_outgoing(bad, t0).code() ==
        status_code::invalid_argument);
  bad.peer = "bob";
  bad.sender = std::string(300, 's');
  CHECK(f.db->add_new_outgoing(bad, t0).code() ==
        status_code::invalid_argument);
  CHECK(bad.id == 7);
  CHECK(*f.db->next_id(0) == in_id + 1);

  // LMDB: the message, its place in the outbox and the id survive a reopen.
  f.reopen();
  CHECK(f.get(a + 3).payload == "three");
  CHECK(f.outbox_mids() == std::vector<uint64_t>{a + 1, a + 3, m4.id});
  auto m5 = m;
  REQUIRE(f.db->add_new_outgoing(m5, 0).ok());
  CHECK(m5.id == in_id + 2);
  CHECK(*f.db->next_id(0) == m5.id + 1);
  // A group message.
  auto g = m;
  g.peer.clear();
  g.group_id = 9;
  g.payload = "group";
  REQUIRE(f.db->add_new_outgoing(g, 0).ok());
  CHECK(f.page("", 9, 0, 10, read_order::newest_first) == strings{"group"});

  // Ids used up: resource_exhausted, nothing stored.
  client_message last = m;
  last.id = last.mid = std::numeric_limits<uint64_t>::max();
  REQUIRE(f.db->add_outgoing(last).ok());
  auto full = m;
  full.payload = "too many";
  CHECK(f.db->add_new_outgoing(full, t0).code() ==
        status_code::resource_exhausted);
  CHECK(full.id == a);
  CHECK(f.outbox_mids().size() == 6);
}

// -- the memory backend's cap (memory_options::max_messages)
// ------------------------------------------

namespace {

memory_options cap(size_t n) {
  memory_options o;
  o.max_messages = n;
  return o;
}

constexpr uint16_t delivery_receipt = 0x01;
constexpr uint16_t read_receipt = 0x02;

} // namespace

TEST_CASE("memory: beyond the cap the oldest received messages go") {
  fixture f{true, cap(3)};
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= 5; ++i)
    ids.push_back(f.receive("bob", 0, i, i, "b" + std::to_string(i)));
  CHECK(!f.held(ids[0]));
  CHECK(!f.held(ids[1]));
  CHECK(f.held(ids[2]));
  CHECK(f.held(ids[4]));
  CHECK(f.page("bob", 0, 0, 10, read_order::newest_first) ==
        strings{"b5", "b4", "b3"});
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"b3", "b4", "b5"});
  // Paging from an evicted id works as from any id.
  CHECK(f.page("bob", 0, ids[1], 10, read_order::oldest_first) ==
        strings{"b3", "b4", "b5"});
  CHECK(f.page("bob", 0, ids[3], 10, read_order::newest_first) ==
        strings{"b3"});
  auto s = f.summary();
  REQUIRE(s.size() == 1);
  CHECK(s[0].last.id == ids[4]);
  CHECK(s[0].unread == 3);

  // 0: no cap.
  fixture all{true, cap(0)};
  std::vector<uint64_t> kept;
  for (uint64_t i = 1; i <= 200; ++i)
    kept.push_back(all.receive("bob", 0, i, i, "x"));
  CHECK(all.held(kept.front()));
  CHECK(all.page("bob", 0, 0, 1000, read_order::oldest_first).size() == 200);
}

TEST_CASE("memory: messages in the outbox or waiting for a receipt stay") {
  fixture f{true, cap(4)};
  auto o1 = f.send("bob", 0, "o1", delivery_receipt | read_receipt);
  auto o2 = f.send("bob", 0, "o2", delivery_receipt);
  REQUIRE(f.db->set_status(o2, st_sent).ok()); // waits for DELIVERED
  auto o3 = f.send_new("bob", "o3", read_receipt);
  REQUIRE(f.db->set_status(o3, st_sent).ok());      // read_receipt: waits too
  REQUIRE(f.db->set_status(o3, st_delivered).ok()); // waits for READ
  auto o4 = f.send("bob", 0, "o4");
  REQUIRE(f.db->set_status(o4, st_sent).ok()); // no receipt asked: final
  CHECK(f.held(o4));                           // 4 held: at the cap

  // A fifth message: the only final one goes.
  auto o5 = f.send_new("bob", "o5");
  CHECK(!f.held(o4));
  for (auto id : {o1, o2, o3, o5})
    CHECK(f.held(id));
  // Nothing older is final: a received message is the one to go, at once.
  auto i1 = f.receive("carol", 0, 1, 1, "i1");
  CHECK(!f.held(i1));
  CHECK(f.outbox_mids() == std::vector<uint64_t>{o1, o5});

  // Every status update finds its message.
  CHECK(f.db->set_status(o1, st_sent)->status == st_sent);
  CHECK(f.db->set_status(o1, st_delivered)->status == st_delivered);
  CHECK(f.db->set_status(o2, st_delivered)->status == st_delivered); // final
  CHECK(f.db->set_status(o5, st_fail)->status == st_fail);           // final
  CHECK(f.outbox_mids().empty());
  for (auto id : {o1, o2, o3, o5})
    CHECK(f.held(id)); // at the cap: nothing to evict yet

  // Final ones go oldest first: o2, then o5 (a failure: requeue cannot
  // bring it back once evicted).
  auto i2 = f.receive("carol", 0, 2, 2, "i2");
  CHECK(!f.held(o2));
  CHECK(f.held(o5));
  CHECK(f.held(i2));
  auto i3 = f.receive("carol", 0, 3, 3, "i3");
  CHECK(!f.held(o5));
  CHECK(f.db->requeue(o5).error().code() == status_code::not_found);
  CHECK(f.held(o1));
  CHECK(f.held(o3));
  CHECK(f.db->set_status(o3, st_read)->status == st_read); // final now
  auto i4 = f.receive("carol", 0, 4, 4, "i4");
  CHECK(!f.held(o3));
  CHECK(f.held(o1));
  CHECK(f.held(i2));
  CHECK(f.held(i3));
  CHECK(f.held(i4));
  // A requeued failure is in the outbox again: not evictable.
  auto o6 = f.send("bob", 0, "o6");
  CHECK(!f.held(i2)); // o6 is in the outbox; i2 was the oldest final
  REQUIRE(f.db->set_status(o6, 0x83).ok());
  REQUIRE(f.db->requeue(o6).ok());
  f.receive("carol", 0, 5, 5, "i5");
  CHECK(f.held(o6));
  CHECK(f.held(o1));
  CHECK(!f.held(i3));
  CHECK(f.outbox_mids() == std::vector<uint64_t>{o6});

  // Only waiting messages: the store holds more than the cap until they
  // become final, then drops to it, oldest first.
  fixture g{true, cap(2)};
  auto a = g.send_new("bob", "a");
  auto b = g.send_new("bob", "b");
  auto c = g.send_new("bob", "c");
  CHECK(g.outbox_mids() == std::vector<uint64_t>{a, b, c});
  REQUIRE(g.db->set_status(c, st_sent).ok());
  CHECK(!g.held(c));
  REQUIRE(g.db->set_status(b, st_sent).ok());
  CHECK(g.held(b));
  REQUIRE(g.db->set_status(a, st_sent).ok());
  CHECK(g.held(a));
  CHECK(g.held(b));
}

TEST_CASE("memory: a redelivery of an evicted message is a duplicate") {
  fixture f{true, cap(2)};
  auto a = f.receive("bob", 0, 10, 100, "a");
  auto b = f.receive("bob", 0, 11, 101, "b");
  auto c = f.receive("carol", 0, 12, 102, "c");
  CHECK(!f.held(a));
  CHECK(f.held(b));

  // Its seq is at or below the highest seq evicted: a redelivery. The id
  // is 0: the copy it duplicates is gone.
  auto again = fixture::incoming("bob", 0, 10, 100, "a");
  auto r = f.db->add_incoming(again);
  REQUIRE(r.ok());
  CHECK(!*r);
  CHECK(again.id == 0);
  auto older = fixture::incoming("dave", 0, 7, 5, "never seen, but older");
  CHECK(!*f.db->add_incoming(older));
  // Held messages: as always, by seq and by (sender, mid), with their id.
  auto dup = fixture::incoming("carol", 0, 12, 999, "c");
  CHECK(!*f.db->add_incoming(dup));
  CHECK(dup.id == c);
  auto rt = fixture::incoming("bob", 0, 0, 101, "b");
  CHECK(!*f.db->add_incoming(rt));
  CHECK(rt.id == b);
  auto d = fixture::incoming("bob", 0, 13, 103, "d");
  CHECK(*f.db->add_incoming(d));
  CHECK(!f.held(b)); // evicted now: seq 11

  // (sender, mid) dedup is only as good as what is held: a real-time resend
  // (seq 0) of an evicted message is stored again.
  auto rt_b = fixture::incoming("bob", 0, 0, 101, "b");
  CHECK(*f.db->add_incoming(rt_b));

  // Own outgoing messages do not raise the bar (their seq comes from a
  // status update, not from add_incoming).
  fixture g{true, cap(1)};
  auto mine = g.send_new("bob", "mine");
  REQUIRE(g.db->set_status(mine, st_sent, 50).ok());
  auto in = g.receive("bob", 0, 30, 1, "in");
  CHECK(!g.held(mine));
  CHECK(g.held(in));
  auto in2 = fixture::incoming("bob", 0, 31, 2, "in2");
  CHECK(*g.db->add_incoming(in2));
}

TEST_CASE("memory: summary and unread counts after eviction") {
  fixture f{true, cap(3)};
  auto b1 = f.receive("bob", 0, 1, 1, "b1");
  auto b2 = f.receive("bob", 0, 2, 2, "b2");
  auto c1 = f.receive("carol", 0, 3, 1, "c1");
  auto s = f.summary();
  REQUIRE(s.size() == 2);
  CHECK(s[1].unread == 2);

  // Evicting an unread message takes it out of the count.
  auto b3 = f.receive("bob", 0, 4, 3, "b3");
  CHECK(!f.held(b1));
  s = f.summary();
  REQUIRE(s.size() == 2);
  CHECK(s[0].last.id == b3);
  CHECK(s[0].unread == 2);
  CHECK(s[1].last.id == c1);
  CHECK(s[1].unread == 1);
  CHECK(*f.db->mark_read("bob", 0, b2) == 2);
  CHECK(f.summary()[0].unread == 1);
  // Evicting a read one does not.
  auto b4 = f.receive("bob", 0, 5, 4, "b4");
  CHECK(!f.held(b2));
  CHECK(f.summary()[0].unread == 2);

  // The last (and only) message of carol goes: carol stays listed with it.
  auto b5 = f.receive("bob", 0, 6, 5, "b5");
  CHECK(!f.held(c1));
  s = f.summary();
  REQUIRE(s.size() == 2);
  CHECK(s[0].peer == "bob");
  CHECK(s[0].last.id == b5);
  CHECK(s[0].unread == 3);
  CHECK(s[1].peer == "carol");
  CHECK(s[1].last.id == c1);
  CHECK(s[1].last.payload == "c1");
  CHECK(s[1].unread == 0);
  CHECK(f.page("carol", 0, 0, 10, read_order::newest_first).empty());
  CHECK(*f.db->mark_read("carol", 0) == 0);

  // mark_read marks what is held and brings the count to 0.
  CHECK(*f.db->mark_read("bob", 0) == 6);
  CHECK(f.summary()[0].unread == 0);
  CHECK(f.get(b4).read);

  // A new message to carol: her entry moves up with it.
  auto c2 = f.receive("carol", 0, 7, 2, "c2");
  CHECK(!f.held(b3));
  s = f.summary();
  REQUIRE(s.size() == 2);
  CHECK(s[0].last.id == c2);
  CHECK(s[0].unread == 1);
  CHECK(s[1].unread == 0);

  // Removing the last message a conversation holds removes it.
  REQUIRE(f.db->remove(c2).ok());
  s = f.summary();
  REQUIRE(s.size() == 1);
  CHECK(s[0].peer == "bob");
  CHECK(s[0].last.id == b5);
  REQUIRE(f.db->remove(b5).ok());
  CHECK(f.summary()[0].last.id == b4);
}

TEST_CASE("memory: beyond max_idle_conversations the first emptied go") {
  auto mo = cap(2);
  mo.max_idle_conversations = 2;
  fixture f{true, mo};
  auto peers = [&] {
    std::string out;
    for (auto& c : f.summary())
      out +=
        (c.group_id != 0 ? "g" + std::to_string(c.group_id) : c.peer) + " ";
    return out;
  };
  f.receive("p1", 0, 1, 1, "a");
  f.receive("p2", 0, 2, 1, "a");
  f.receive("p3", 7, 3, 1, "a"); // a group conversation
  f.receive("p4", 0, 4, 1, "a");
  // p1 and the group hold nothing now: idle, listed, within the bound.
  CHECK(peers() == "p4 g7 p2 p1 ");
  f.receive("p5", 0, 5, 1, "a");
  // Three idle: p1, which emptied first, is forgotten.
  CHECK(peers() == "p5 p4 g7 p2 ");
  // A message to an idle conversation makes it busy again.
  auto b = f.receive("p2", 0, 6, 2, "b");
  CHECK(peers() == "p2 p5 p4 g7 ");
  f.receive("p6", 0, 7, 1, "a");
  // Idle: g7, p4, p5; p2's old turn is stale (it holds b), so the group
  // goes.
  CHECK(peers() == "p6 p2 p5 p4 ");
  CHECK(f.held(b));
  CHECK(f.page("", 7, 0, 10, read_order::newest_first).empty());
  // A forgotten conversation comes back with its next message.
  f.receive("p1", 0, 8, 2, "c");
  CHECK(peers() == "p1 p6 p2 p5 ");
}

TEST_CASE("memory: the idle conversations' queue, rebuilt, keeps its order") {
  auto mo = cap(1);
  mo.max_idle_conversations = 4;
  fixture f{true, mo};
  auto peers = [&] {
    std::string out;
    for (auto& c : f.summary())
      out += c.peer + " ";
    return out;
  };
  uint64_t seq = 0;
  // c1, c2, c3 go idle first, in that order (one message held at a time).
  for (auto p : {"c1", "c2", "c3"})
    f.receive(p, 0, ++seq, 1, "c");
  // Then two peers take turns: each message evicts the other's, which
  // goes idle and busy again, so the queue fills with stale entries and
  // is rebuilt (from the conversations, by their last ids) several times.
  for (uint64_t k = 1; k <= 3000; ++k) {
    f.receive("a", 0, ++seq, k, "x");
    f.receive("b", 0, ++seq, k, "x");
  }
  CHECK(peers() == "b a c3 c2 c1 ");
  // Idle now: c1, c2, c3 and a, the bound. Two more go idle (b, then d1):
  // the two that emptied first, c1 and c2, are forgotten.
  f.receive("d1", 0, ++seq, 1, "d");
  f.receive("d2", 0, ++seq, 1, "d");
  CHECK(peers() == "d2 d1 b a c3 ");
}

// -- both backends agree
// ---------------------------------------------------------------------

namespace {

std::string show(const client_message& m) {
  return std::to_string(m.id) + "/" + std::to_string(m.mid) + "/" +
         std::to_string(m.seq) + "/" + m.peer + "/" +
         std::to_string(m.group_id) + "/" + m.sender + "/" +
         std::to_string(m.outgoing) + "/" + std::to_string(m.kind) + "/" +
         std::to_string(m.flags) + "/" + std::to_string(m.expiry_s) + "/" +
         std::to_string(m.in_reply_to) + "/" + std::to_string(m.ts_ms) + "/" +
         std::to_string(m.status) + "/" + std::to_string(m.read) + "/" +
         m.payload;
}

std::string show(const std::vector<client_message>& v) {
  std::string out;
  for (auto& m : v)
    out += show(m) + "\n";
  return out;
}

std::string show(const std::vector<conversation_summary>& v) {
  std::string out;
  for (auto& c : v)
    out += c.peer + "/" + std::to_string(c.group_id) + "/" +
           std::to_string(c.unread) + ": " + show(c.last) + "\n";
  return out;
}

std::string show(const std::optional<client_message>& m) {
  return m ? show(*m) : "none";
}

std::string show(uint64_t v) {
  return std::to_string(v);
}

std::string show(bool v) {
  return v ? "true" : "false";
}

/// "error <code>" or the value shown.
template<class T>
std::string show(const result<T>& r) {
  if (!r)
    return "error " + std::string{to_string(r.error().code())};
  return show(*r);
}

std::string show(const status& s) {
  return s ? "ok" : "error " + std::string{to_string(s.code())};
}

} // namespace

TEST_CASE("the memory backend (without a cap) answers as LMDB does") {
  fixture lm{false};
  fixture mem{true, cap(0)};
  std::mt19937_64 rng{20240611};
  auto pick = [&](uint64_t n) {
    return std::uniform_int_distribution<uint64_t>{0, n - 1}(rng);
  };
  const std::vector<std::string> peers{"a", "b", "ab", "me"};
  std::vector<uint64_t> ids{0}; // every id seen, and 0
  uint64_t now = t0;
  auto any_id = [&] {
    auto id = ids[pick(ids.size())];
    return pick(8) == 0 ? id + 1 : id;
  };
  auto conv = [&](std::string& peer, uint32_t& group) {
    if (pick(5) == 0) {
      peer.clear();
      group = 5;
    } else {
      peer = peers[pick(peers.size() - 1)];
      group = 0;
    }
  };
  for (int op = 0; op < 3000; ++op) {
    now += pick(3);
    std::string what;
    std::string got_l, got_m;
    switch (pick(12)) {
    case 0:
    case 1: { // a new outgoing message
      client_message m;
      conv(m.peer, m.group_id);
      m.sender = "me";
      m.outgoing = true;
      m.flags = static_cast<uint16_t>(pick(4));
      m.ts_ms = now;
      m.payload = "out" + std::to_string(op);
      auto ml = m, mm = m;
      if (pick(2) == 0) {
        what = "add_new_outgoing";
        got_l = show(lm.db->add_new_outgoing(ml, now)) + show(ml);
        got_m = show(mem.db->add_new_outgoing(mm, now)) + show(mm);
      } else {
        what = "next_id + add_outgoing";
        auto il = lm.db->next_id(now), im = mem.db->next_id(now);
        REQUIRE(il.ok());
        REQUIRE(im.ok());
        ml.id = ml.mid = *il;
        mm.id = mm.mid = *im;
        got_l = show(lm.db->add_outgoing(ml)) + show(ml);
        got_m = show(mem.db->add_outgoing(mm)) + show(mm);
      }
      ids.push_back(ml.id);
      break;
    }
    case 2:
    case 3: { // a received message, with duplicates
      std::string peer;
      uint32_t group = 0;
      conv(peer, group);
      auto sender = group != 0 ? peers[pick(peers.size())] : peer;
      auto m = fixture::incoming(sender, group, pick(3) == 0 ? 0 : pick(300),
                                 pick(40), "in" + std::to_string(op));
      if (group == 0 && pick(6) == 0) { // an outgoing copy from a device
        m.sender = "me";
        m.outgoing = true;
        m.status = st_sent;
      }
      auto ml = m, mm = m;
      what = "add_incoming";
      got_l = show(lm.db->add_incoming(ml)) + show(ml.id);
      got_m = show(mem.db->add_incoming(mm)) + show(mm.id);
      ids.push_back(ml.id);
      break;
    }
    case 4: {
      static const uint8_t statuses[] = {st_outbox, st_sent, st_delivered,
                                         st_read,   st_fail, st_expired,
                                         0x83,      0x12};
      auto id = any_id();
      auto st = statuses[pick(8)];
      auto seq = pick(2) == 0 ? 0 : pick(300);
      auto ts = pick(2) == 0 ? 0 : now;
      what = "set_status";
      got_l = show(lm.db->set_status(id, st, seq, ts));
      got_m = show(mem.db->set_status(id, st, seq, ts));
      break;
    }
    case 5: {
      auto id = any_id();
      what = pick(2) == 0 ? "requeue" : "remove";
      if (what == "requeue") {
        got_l = show(lm.db->requeue(id));
        got_m = show(mem.db->requeue(id));
      } else {
        got_l = show(lm.db->remove(id));
        got_m = show(mem.db->remove(id));
      }
      break;
    }
    case 6: {
      std::string peer;
      uint32_t group = 0;
      conv(peer, group);
      auto up_to = pick(2) == 0 ? 0 : any_id();
      what = "mark_read";
      got_l = show(lm.db->mark_read(peer, group, up_to));
      got_m = show(mem.db->mark_read(peer, group, up_to));
      break;
    }
    case 7: {
      auto seq = pick(300);
      what = "set_cursor";
      got_l = show(lm.db->set_cursor(seq)) + show(lm.db->cursor());
      got_m = show(mem.db->set_cursor(seq)) + show(mem.db->cursor());
      break;
    }
    default: { // reads
      std::string peer;
      uint32_t group = 0;
      conv(peer, group);
      auto from = pick(3) == 0 ? 0 : any_id();
      auto count = static_cast<size_t>(pick(8));
      auto order =
        pick(2) == 0 ? read_order::newest_first : read_order::oldest_first;
      what = "read/get/summary/outbox";
      auto id = any_id();
      got_l = show(lm.db->read(peer, group, from, count, order)) +
              show(lm.db->get(id)) + show(lm.db->summary()) +
              show(lm.db->outbox());
      got_m = show(mem.db->read(peer, group, from, count, order)) +
              show(mem.db->get(id)) + show(mem.db->summary()) +
              show(mem.db->outbox());
      break;
    }
    }
    INFO("op ", op, ": ", what);
    REQUIRE(got_l == got_m);
  }
  // Whole conversations at the end.
  for (auto& p : peers) {
    auto l = lm.db->read(p, 0, 0, 100000, read_order::oldest_first);
    auto m = mem.db->read(p, 0, 0, 100000, read_order::oldest_first);
    CHECK(show(l) == show(m));
  }
  CHECK(show(lm.db->summary()) == show(mem.db->summary()));
}

// -- threads
// ---------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("one writer thread, one reader thread", B, lmdb_backend,
                   memory_backend) {
  // Memory: a cap, so evictions race with the reads too.
  fixture f{B::memory, cap(300)};
  auto& db = *f.db;
  constexpr int writes = 1500;
  constexpr int reads = 1500;
  const std::vector<std::string> peers{"p0", "p1", "p2", "p3"};
  std::atomic<uint64_t> last_out{0};
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::string first_error; // written by the thread that errs first
  std::atomic<bool> have_error{false};
  auto fail = [&](std::string what) {
    if (!have_error.exchange(true))
      first_error = std::move(what);
    ++errors;
  };

  std::thread writer{[&] {
    for (int i = 0; i < writes; ++i) {
      const auto& peer = peers[i % 4];
      client_message m;
      m.peer = peer;
      m.sender = "me";
      m.outgoing = true;
      m.payload = "out " + std::to_string(i);
      if (auto s = db.add_new_outgoing(m, t0 + i); !s) {
        fail("add_new_outgoing: " + s.to_string());
        break;
      }
      last_out = m.id;
      auto seq = static_cast<uint64_t>(2 * i + 1);
      if (auto r = db.set_status(m.mid, st_sent, seq, t0 + i); !r) {
        fail("set_status: " + r.error().to_string());
        break;
      }
      auto in = fixture::incoming(peer, 0, seq + 1, static_cast<uint64_t>(i),
                                  "in " + std::to_string(i));
      auto fresh = db.add_incoming(in);
      if (!fresh || !*fresh) {
        fail("add_incoming");
        break;
      }
      if (i % 50 == 49)
        if (auto r = db.mark_read(peer, 0); !r) {
          fail("mark_read: " + r.error().to_string());
          break;
        }
    }
    done = true;
  }};

  std::thread reader{[&] {
    for (int r = 0; r < reads && errors == 0; ++r) {
      if (auto id = last_out.load(); id != 0) {
        auto m = db.get(id);
        if (!m)
          fail("get: " + m.error().to_string());
        else if (*m && ((*m)->id != id || !(*m)->outgoing ||
                        (*m)->payload.rfind("out ", 0) != 0 ||
                        ((*m)->status != st_outbox && (*m)->status != st_sent)))
          fail("get: " + show(**m));
      }
      const auto& peer = peers[r % 4];
      auto page = db.read(peer, 0, 0, 20, read_order::newest_first);
      if (!page) {
        fail("read: " + page.error().to_string());
      } else {
        uint64_t prev = std::numeric_limits<uint64_t>::max();
        for (auto& m : *page) {
          if (m.id >= prev || m.peer != peer)
            fail("read: out of order or another conversation: " + show(m));
          prev = m.id;
        }
      }
      auto sum = db.summary();
      if (!sum) {
        fail("summary: " + sum.error().to_string());
      } else {
        for (auto& c : *sum)
          if (c.last.id == 0 || c.last.peer != c.peer ||
              c.unread > static_cast<uint64_t>(writes))
            fail("summary: " + show(*sum));
      }
      auto box = db.outbox();
      if (!box) {
        fail("outbox: " + box.error().to_string());
      } else {
        for (auto& m : *box)
          if (m.status != st_outbox)
            fail("outbox: " + show(m));
      }
    }
  }};
  writer.join();
  reader.join();
  CHECK(done);
  INFO(first_error);
  CHECK(errors == 0);

  // The end state: every message there (LMDB) or the cap's worth (memory),
  // and unread counts that match the messages held.
  size_t held = 0;
  auto sum = f.summary();
  REQUIRE(sum.size() == 4);
  for (auto& c : sum) {
    auto page = db.read(c.peer, 0, 0, 100000, read_order::oldest_first);
    REQUIRE(page.ok());
    held += page->size();
    uint64_t unread = 0;
    for (auto& m : *page)
      if (!m.outgoing && !m.read)
        ++unread;
    CHECK(c.unread == unread);
  }
  CHECK(held == (B::memory ? 300u : 2u * writes));
  CHECK(f.outbox_mids().empty());
}

TEST_CASE("memory: concurrent writers are serialised") {
  fixture f{true, cap(0)};
  auto& db = *f.db;
  constexpr int per_thread = 1000;
  std::vector<uint64_t> a, b;
  std::atomic<int> errors{0};
  auto sender = [&](std::vector<uint64_t>& out, const std::string& peer) {
    for (int i = 0; i < per_thread; ++i) {
      client_message m;
      m.peer = peer;
      m.sender = "me";
      m.outgoing = true;
      m.payload = peer + std::to_string(i);
      if (!db.add_new_outgoing(m, t0)) // one millisecond: the counter races
        ++errors;
      out.push_back(m.id);
    }
  };
  std::thread ta{sender, std::ref(a), "bob"};
  std::thread tb{sender, std::ref(b), "carol"};
  std::thread tc{[&] {
    for (int i = 1; i <= per_thread; ++i) {
      auto m = fixture::incoming("dave", 0, static_cast<uint64_t>(i),
                                 static_cast<uint64_t>(i), "d");
      auto r = db.add_incoming(m);
      if (!r || !*r)
        ++errors;
    }
  }};
  ta.join();
  tb.join();
  tc.join();
  CHECK(errors == 0);
  CHECK(std::is_sorted(a.begin(), a.end()));
  CHECK(std::is_sorted(b.begin(), b.end()));
  std::vector<uint64_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
  CHECK(f.outbox_mids() == all);
  CHECK(f.page("dave", 0, 0, 5000, read_order::oldest_first).size() ==
        size_t{per_thread});
  CHECK(*db.next_id(t0) > std::max(all.back(), uint64_t{0}));
}

TEST_CASE("memory: eviction keeps its invariants under random operations") {
  constexpr size_t limit = 40;
  fixture f{true, cap(limit)};
  std::mt19937_64 rng{7};
  auto pick = [&](uint64_t n) {
    return std::uniform_int_distribution<uint64_t>{0, n - 1}(rng);
  };
  const std::vector<std::string> peers{"a", "b", "c"};
  // This device's outgoing messages, with their last known status.
  std::map<uint64_t, client_message> mine;
  auto waiting = [](const client_message& m) {
    if ((m.status & 0x80) != 0 || m.status == st_read)
      return false;
    if (m.status == st_delivered)
      return (m.flags & read_receipt) != 0;
    if (m.status == st_sent)
      return (m.flags & (delivery_receipt | read_receipt)) != 0;
    return true; // OUTBOX
  };
  uint64_t seq = 0;
  for (int op = 0; op < 4000; ++op) {
    INFO("op ", op);
    switch (pick(8)) {
    case 0: {
      auto mid =
        f.send_new(peers[pick(3)], "o", static_cast<uint16_t>(pick(4)));
      mine[mid] = f.get(mid);
      break;
    }
    case 1:
    case 2:
    case 3: {
      if (mine.empty())
        break;
      auto it = std::next(mine.begin(), static_cast<long>(pick(mine.size())));
      static const uint8_t statuses[] = {st_sent, st_delivered, st_read,
                                         st_fail};
      auto r = f.db->set_status(it->first, statuses[pick(4)]);
      if (waiting(it->second))
        REQUIRE(r.ok()); // a message waiting for news is always there
      if (r.ok())
        it->second = *r;
      else
        mine.erase(it); // evicted (it was final)
      break;
    }
    case 4: {
      if (mine.empty())
        break;
      auto it = std::next(mine.begin(), static_cast<long>(pick(mine.size())));
      auto r = f.db->requeue(it->first);
      if (r.ok())
        it->second = *r;
      else if (r.error().code() == status_code::not_found)
        mine.erase(it);
      break;
    }
    case 5:
      if (pick(10) == 0) {
        f.db->mark_read(peers[pick(3)], 0);
      } else if (pick(10) == 0 && !mine.empty()) {
        auto it = std::next(mine.begin(), static_cast<long>(pick(mine.size())));
        f.db->remove(it->first);
        mine.erase(it);
      }
      break;
    default: {
      ++seq;
      auto m = fixture::incoming(peers[pick(3)], 0, seq, seq, "i");
      REQUIRE(*f.db->add_incoming(m));
      break;
    }
    }
    // Every message waiting for news is held; above the cap, only those.
    size_t held = 0, held_waiting = 0, lost = 0;
    for (auto& [mid, m] : mine)
      if (waiting(m) && !f.held(mid))
        ++lost;
    CHECK(lost == 0);
    auto sum = f.summary();
    for (auto& c : sum) {
      auto page = f.db->read(c.peer, 0, 0, 100000, read_order::oldest_first);
      REQUIRE(page.ok());
      uint64_t unread = 0;
      for (auto& m : *page) {
        ++held;
        if (m.outgoing && m.id == m.mid && waiting(m))
          ++held_waiting;
        if (!m.outgoing && !m.read)
          ++unread;
      }
      CHECK(c.unread == unread);
    }
    CHECK(held <= std::max(limit, held_waiting));
  }
}

TEST_CASE("memory: the eviction queue sheds entries of removed messages") {
  fixture f{true, cap(1500)};
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= 1500; ++i)
    ids.push_back(f.receive("bob", 0, i, i, "x"));
  for (auto id : ids)
    REQUIRE(f.db->remove(id).ok());
  CHECK(f.summary().empty());
  // 1500 stale entries, no message: the next write rebuilds the queue, and
  // eviction goes on oldest first.
  ids.clear();
  for (uint64_t i = 1501; i <= 3001; ++i)
    ids.push_back(f.receive("bob", 0, i, i, "y"));
  CHECK(!f.held(ids[0]));
  CHECK(f.held(ids[1]));
  CHECK(f.page("bob", 0, 0, 5000, read_order::oldest_first).size() == 1500);
}

TEST_CASE_TEMPLATE("history sync: older messages sort in by time, each once",
                   B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  // Live: seqs 10 and 11 arrive first.
  f.receive("bob", 0, 10, 10, "ten");
  f.receive("bob", 0, 11, 11, "eleven");
  // Synced: older seqs, ids of their own from the server's stamps.
  for (uint64_t seq : {3u, 7u}) {
    auto m = fixture::incoming("bob", 0, seq, seq, "s" + std::to_string(seq));
    m.id = history_id(m.ts_ms, m.seq);
    auto fresh = f.db->add_incoming(m);
    REQUIRE(fresh.ok());
    CHECK(*fresh);
    CHECK(m.id == history_id(m.ts_ms, seq));
  }
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"s3", "s7", "ten", "eleven"});
  // The same page again: duplicates by seq, nothing stored twice.
  auto again = fixture::incoming("bob", 0, 7, 7, "s7");
  again.id = history_id(again.ts_ms, 7);
  CHECK(!*f.db->add_incoming(again));
  // A chosen id that is taken is refused, not overwritten.
  auto clash = fixture::incoming("bob", 0, 8, 8, "clash");
  clash.id = history_id(t0 + 7, 7);
  CHECK(f.db->add_incoming(clash).error().code() ==
        status_code::already_exists);
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first).size() == 4);
}

TEST_CASE_TEMPLATE("history sync: a synced message sorts before the live "
                   "ones of its own millisecond, after those of the one "
                   "before",
                   B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto add = [&](uint64_t seq, uint64_t ts, bool synced) {
    auto m = fixture::incoming("bob", 0, seq, seq, "m" + std::to_string(seq));
    m.ts_ms = ts;
    if (synced)
      m.id = history_id(m.ts_ms, m.seq);
    auto fresh = f.db->add_incoming(m);
    REQUIRE_MESSAGE(fresh.ok(), fresh.error().to_string());
    REQUIRE(*fresh);
  };
  // A burst: seqs 2 to 6 stamped in one millisecond, 1 in the one before.
  // The device holds 1 and was streamed 4 to 6 live (a new device starts
  // at the least advanced cursor of the user's devices); it syncs 2 and 3.
  add(1, t0 + 99, false);
  for (uint64_t seq : {4u, 5u, 6u})
    add(seq, t0 + 100, false);
  for (uint64_t seq : {3u, 2u}) // a sync pages newest first
    add(seq, t0 + 100, true);
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first) ==
        strings{"m1", "m2", "m3", "m4", "m5", "m6"});
  // And a synced message of the millisecond before sorts before them all.
  add(0 + 7, t0 + 98, true);
  CHECK(f.page("bob", 0, 0, 10, read_order::oldest_first).front() == "m7");
}

TEST_CASE_TEMPLATE("another device's outgoing copy never looks like this "
                   "device's own, even when the clocks agree",
                   B, lmdb_backend, memory_backend) {
  fixture f{B::memory};
  // The other device made its mid from the same millisecond the server
  // stamped: the id this database would draw for the copy is that mid.
  auto copy = fixture::incoming("bob", 0, 5, 1, "from my phone");
  copy.sender = "me";
  copy.outgoing = true;
  copy.status = st_sent;
  copy.mid = detail::id_candidate(copy.ts_ms);
  auto fresh = f.db->add_incoming(copy);
  REQUIRE(fresh.ok());
  CHECK(*fresh);
  CHECK(copy.id != copy.mid);
  // So a status for that mid is not applied to it as if sent from here.
  auto st = f.db->set_status(copy.mid, st_delivered, 6, t0);
  CHECK(!st.ok());
  auto held = f.db->get(copy.id);
  REQUIRE(held.ok());
  REQUIRE(*held);
  CHECK((*held)->payload == "from my phone");
  auto none = f.db->get(copy.mid);
  REQUIRE(none.ok());
  CHECK(!*none);
}

TEST_CASE_TEMPLATE("remove drops every member receipt of a group message", B,
                   lmdb_backend, memory_backend) {
  fixture f{B::memory};
  auto id = f.send("", 5, "to the group");
  REQUIRE(f.db->set_receivers(id, 3).ok());
  for (std::string m : {"bob", "carol", "dave"})
    REQUIRE(f.db->member_status(id, m, st_delivered, t0).ok());
  REQUIRE(f.db->member_receipts(id)->size() == 3);
  REQUIRE(f.db->remove(id).ok());
  auto left = f.db->member_receipts(id);
  REQUIRE(left.ok());
  CHECK(left->empty());
}
