// Issue 6: faults, survived. parleyd killed with SIGKILL under load and
// connections dropped at random (parley-sim's oracle checks every message),
// a client process killed mid-send and restarted on its database, a receiver
// that stops reading, a full database. `scripts/chaos N` runs the kill cycles
// for longer; docs/RELIABILITY.md has the figures.

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

using namespace parley;
using namespace parley::test;
using codec::message_status;

namespace {

/// RssAnon of `pid` in KiB (heap and stacks: not LMDB's file-backed map).
uint64_t rss_anon_kib(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string key;
  uint64_t v = 0;
  while (in >> key) {
    if (key == "RssAnon:") {
      in >> v;
      return v;
    }
    in.ignore(4096, '\n');
  }
  return 0;
}

/// A `parley chat PEER` process whose stdin is a pipe held by the test.
class chat_process {
 public:
  chat_process(uint16_t port, const std::string& ca, const std::string& token,
               const std::string& db, const std::string& peer) {
    int in[2];
    REQUIRE(::pipe(in) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::close(in[0]);
      ::close(in[1]);
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      auto server = "127.0.0.1:" + std::to_string(port);
      ::execl(PARLEY_CLI, "parley", "--server", server.c_str(), "--ca",
              ca.c_str(), "chat", "--app", "demo", "--token", token.c_str(),
              "--db", db.c_str(), peer.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    stdin_ = in[1];
  }

  ~chat_process() {
    if (stdin_ >= 0)
      ::close(stdin_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void line(const std::string& text) {
    auto l = text + "\n";
    REQUIRE(::write(stdin_, l.data(), l.size()) ==
            static_cast<ssize_t>(l.size()));
  }

  void kill9() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
};

/// Receives the next message at `c`, acknowledging it like the SDK does.
codec::message receive(test_client& c) {
  auto m = c.expect<codec::message>();
  c.send(codec::ack{m.seq});
  return m;
}

/// Receives the next message after `last` (as the SDK does: a record the
/// device stored already comes again when the server died before it
/// committed the ack; it is skipped, not delivered twice).
codec::message receive_after(test_client& c, uint64_t& last) {
  for (;;) {
    auto m = receive(c);
    if (m.seq > last) {
      last = m.seq;
      return m;
    }
  }
}

/// Sends `payload` to bob (mids 1, 2, ...) until a send is not SENT; returns
/// that answer, with `mid` the refused message's.
codec::status_update send_until_refused(test_client& a,
                                        const std::string& payload,
                                        uint64_t& mid) {
  for (;;) {
    codec::send s;
    s.mid = ++mid;
    s.peer = "bob";
    s.payload = payload;
    a.send(s);
    auto st = answer(a, mid);
    if (st.value != message_status::sent)
      return st;
    REQUIRE(mid < 5000);
  }
}

} // namespace

TEST_CASE("kill -9 parleyd under a chat load, 3 cycles: nothing SENT is lost, "
          "duplicated or reordered") {
  auto r = run_sim("--spawn-server --users 40 chat --duration 4 "
                   "--kill-server 3 --settle 60");
  check_verified(r);
  CHECK(r.report["server_kills"] == 3);
  CHECK(r.report["sent"].get<uint64_t>() > 0);
  CHECK(r.report["delivered"] == r.report["sent"]);
}

TEST_CASE("connections dropped at random under load: clients reconnect, "
          "nothing lost or duplicated") {
  auto r = run_sim("--spawn-server --users 40 chat --duration 3 "
                   "--drop-connections 40 --settle 60");
  check_verified(r);
  CHECK(r.report["connection_drops"].get<uint64_t>() >= 60);
  CHECK(r.report["delivered"] == r.report["sent"]);
}

TEST_CASE("a client killed with its outbox full sends it after a restart, "
          "each message once") {
  temp_dir dir;
  auto data = dir.path() + "/server";
  auto cert = data + "/cert.pem";
  auto db = dir.path() + "/alice-db";
  uint16_t port = 0;
  std::string alice, bob_token;
  auto srv = std::make_unique<parleyd_process>(data, 0);
  port = srv->port();
  alice = srv->token("alice");
  bob_token = srv->token("bob");
  auto bob = test_client::connect(port, cert);
  bob->login("demo", bob_token, "b1");
  chat_process chat{port, cert, alice, db, "bob"};
  // Online: 1..20 go out.
  for (int i = 1; i <= 20; ++i)
    chat.line("m" + std::to_string(i));
  uint64_t last = 0;
  for (int i = 1; i <= 20; ++i)
    CHECK(receive_after(*bob, last).payload == "m" + std::to_string(i));
  // The server goes away; 21..40 can only go to the outbox...
  CHECK(srv->signal_and_wait(SIGKILL) == 128 + SIGKILL);
  srv.reset();
  for (int i = 21; i <= 40; ++i)
    chat.line("m" + std::to_string(i));
  // ...where the local database shows them (read by another process).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool queued = false;
  while (!queued && std::chrono::steady_clock::now() < deadline) {
    auto [rc, out] = run_cli("history --app demo --token " + alice + " --db " +
                             db + " --count 100 bob");
    queued = rc == 0 && out.find("m40  [outbox]") != std::string::npos;
  }
  REQUIRE_MESSAGE(queued, "the outbox never held m40");
  // The client dies with them; the server comes back on the same port.
  chat.kill9();
  parleyd_process again{data, port};
  bob = test_client::connect(port, cert);
  bob->login("demo", bob_token, "b1");
  // The client restarts on its database: the outbox goes out before the
  // new message, in order, and bob sees each once.
  auto [rc, out] =
    run_cli("--server 127.0.0.1:" + std::to_string(port) + " --ca " + cert +
            " send --app demo --token " + alice + " --db " + db + " bob last");
  CHECK_MESSAGE(rc == 0, out);
  for (int i = 21; i <= 40; ++i)
    CHECK(receive_after(*bob, last).payload == "m" + std::to_string(i));
  CHECK(receive_after(*bob, last).payload == "last");
  bob->barrier();
  CHECK(bob->queued() == 0);
}

TEST_CASE("a receiver that stops reading costs the server bounded memory") {
  temp_dir dir;
  // jemalloc keeps freed pages for 10 s by default: RssAnon then counted
  // 10-20 MB the server had freed already, more or less by chance. Pages
  // go back at once for this parleyd, so what is measured is what it holds.
  ::setenv("MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0", 1);
  parleyd_process srv{dir.path(), 0, {"--nosync"}};
  ::unsetenv("MALLOC_CONF");
  auto cert = dir.path() + "/cert.pem";
  auto a = test_client::connect(srv.port(), cert);
  a->login("demo", srv.token("alice"), "a1");
  // bob logs in and never reads.
  auto b = test_client::connect(srv.port(), cert);
  b->login("demo", srv.token("bob"), "b1");
  auto before = rss_anon_kib(srv.pid());
  REQUIRE(before > 0);
  // 80 MB for him: alice is answered SENT for every message meanwhile.
  const int batches = 200, per_batch = 100;
  std::string payload(4000, 'p');
  uint64_t mid = 0;
  for (int k = 0; k < batches; ++k) {
    for (int i = 0; i < per_batch; ++i) {
      codec::send s;
      s.mid = ++mid;
      s.peer = "bob";
      s.payload = payload;
      a->send(s);
    }
    for (uint64_t m = mid - per_batch + 1; m <= mid; ++m)
      CHECK(answer(*a, m).value == message_status::sent);
  }
  auto after = rss_anon_kib(srv.pid());
  MESSAGE("parleyd RssAnon before " << before << " KiB, after 80 MB for a "
                                    << "receiver that does not read: " << after
                                    << " KiB");
  // The write buffer (1 MiB) bounds what waits for him in memory, however
  // large the window (4096 records, 16 MB of these); the rest waits on
  // disk. Measured here: +5 MiB (LMDB's dirty pages of the largest
  // transaction, the buffers). A session that encoded its window before
  // writing held 16 MB more. (Not under sanitizers: ASan keeps freed
  // memory in quarantine, 256 MiB by default.)
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK(after < before + 12 * 1024);
#endif
  // He resumes and gets everything, in order.
  for (uint64_t i = 1; i <= mid; ++i) {
    auto m = receive(*b);
    REQUIRE(m.mid == i);
  }
}

TEST_CASE("a full database refuses new messages with a reason and keeps "
          "delivering") {
  temp_dir dir;
  parleyd_process srv{
    dir.path(),
    0,
    {"--nosync", "--map-size", "1048576", "--max-map-size", "4194304"}};
  auto cert = dir.path() + "/cert.pem";
  auto a = test_client::connect(srv.port(), cert);
  a->login("demo", srv.token("alice"), "a1");
  std::string payload(3000, 'q');
  uint64_t mid = 0;
  auto refused = send_until_refused(*a, payload, mid);
  CHECK(refused.value == message_status::fail);
  CHECK(refused.text.find("storage is full") != std::string::npos);
  // bob still gets every message that was SENT, in order.
  auto b = test_client::connect(srv.port(), cert);
  b->login("demo", srv.token("bob"), "b1");
  for (uint64_t i = 1; i < mid; ++i)
    REQUIRE(receive(*b).mid == i);
  b->barrier();
  CHECK(b->queued() == 0);
}

TEST_CASE("a full disk (a file size limit) refuses new messages with a "
          "reason, keeps delivering, and recovers when space returns") {
  temp_dir dir;
  parleyd_process srv{dir.path(), 0};
  auto cert = dir.path() + "/cert.pem";
  auto a = test_client::connect(srv.port(), cert);
  a->login("demo", srv.token("alice"), "a1");
  // The disk fills up: parleyd's files may not grow beyond 256 KiB more
  // than the database holds now (as ENOSPC would: writes past it fail,
  // with EFBIG; parleyd ignores SIGXFSZ).
  struct stat info{};
  REQUIRE(::stat((dir.path() + "/store/data.mdb").c_str(), &info) == 0);
  rlimit full{static_cast<rlim_t>(info.st_size) + 256 * 1024, RLIM_INFINITY};
  rlimit old{};
  REQUIRE(::prlimit(srv.pid(), RLIMIT_FSIZE, nullptr, &old) == 0);
  full.rlim_max = old.rlim_max;
  REQUIRE(::prlimit(srv.pid(), RLIMIT_FSIZE, &full, nullptr) == 0);
  std::string payload(3000, 'd');
  uint64_t mid = 0;
  auto refused = send_until_refused(*a, payload, mid);
  CHECK(mid > 1);
  CHECK(refused.value == message_status::fail);
  CHECK(refused.text.find("could not store") != std::string::npos);
  CHECK(refused.text.find("send it again") != std::string::npos);
  // Reads go on: bob gets every message that was SENT, in order.
  auto b = test_client::connect(srv.port(), cert);
  b->login("demo", srv.token("bob"), "b1");
  for (uint64_t i = 1; i < mid; ++i)
    REQUIRE(b->expect<codec::message>().mid == i);
  // Space returns: the refused message, sent again, is stored and arrives.
  REQUIRE(::prlimit(srv.pid(), RLIMIT_FSIZE, &old, nullptr) == 0);
  codec::send again;
  again.mid = mid;
  again.peer = "bob";
  again.payload = "after the disk was freed";
  a->send(again);
  CHECK(answer(*a, mid).value == message_status::sent);
  auto m = b->expect<codec::message>();
  CHECK(m.mid == mid);
  CHECK(m.payload == "after the disk was freed");
}

