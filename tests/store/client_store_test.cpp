// The client SDK's local database: device id, ids, outbox and statuses,
// incoming dedup, the cursor, conversation pages, summary and unread counts,
// removal, key/value and the format check. Pure store tests: time passed in.

#include "store/client_store.hpp"

#include "tests/support/temp_dir.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>

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

struct fixture {
  test::temp_dir dir;
  std::unique_ptr<client_store> db;
  uint64_t now = t0;

  fixture() { reopen(); }

  void reopen(const env_options& opts = fast()) {
    db.reset();
    auto s = client_store::open(dir.path(), opts);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
    db = std::move(*s);
  }

  /// Stores an outgoing message to `peer` (or `group`) and returns its mid.
  uint64_t send(const std::string& peer, uint32_t group,
                const std::string& payload) {
    auto id = db->next_id(now++);
    REQUIRE(id.ok());
    client_message m;
    m.id = m.mid = *id;
    m.peer = peer;
    m.group_id = group;
    m.sender = "me";
    m.outgoing = true;
    m.ts_ms = now;
    m.payload = payload;
    auto st = db->add_outgoing(m);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return m.mid;
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

TEST_CASE("the device id is made once and survives a reopen") {
  fixture f;
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
  fixture other;
  CHECK(*other.db->device_id() != *id);
}

TEST_CASE("next_id increases strictly, across reopens and clock jumps") {
  fixture f;
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
  fixture fresh;
  CHECK(*fresh.db->next_id(0) == 1); // never 0
}

TEST_CASE("outgoing messages queue in the outbox until a status") {
  fixture f;
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

TEST_CASE("set_status and add_outgoing refuse what is wrong") {
  fixture f;
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

TEST_CASE("incoming messages are deduplicated by seq and by (sender, mid)") {
  fixture f;
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

TEST_CASE("the cursor only rises and persists") {
  fixture f;
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

TEST_CASE("conversation pages, both directions, conversations kept apart") {
  fixture f;
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

TEST_CASE("summary, unread counts and mark_read") {
  fixture f;
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

TEST_CASE("remove deletes a message and its traces") {
  fixture f;
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

TEST_CASE("key/value") {
  fixture f;
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

TEST_CASE("requeue: a failed message goes back to the outbox, a sent one not") {
  parley::test::temp_dir dir;
  auto db = parley::store::client_store::open(dir.path());
  REQUIRE(db.ok());
  auto& s = **db;
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
