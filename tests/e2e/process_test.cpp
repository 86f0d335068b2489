// parleyd as a process: kill -9 and restart on the same port loses nothing
// that got SENT; SIGTERM says SHUTDOWN to clients and exits 0.

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/wait.h>
#include <vector>

using namespace parley;
using namespace parley::test;

TEST_CASE("kill -9 loses nothing that got SENT; the port rebinds at once") {
  temp_dir dir;
  auto cert = dir.path() + "/cert.pem";
  uint16_t port;
  {
    parleyd_process p{dir.path(), 0};
    port = p.port();
    auto a = test_client::connect(port, cert);
    a->login("demo", p.token("alice"), "a1");
    for (uint64_t i = 1; i <= 50; ++i) {
      codec::send s;
      s.mid = i;
      s.peer = "bob";
      s.payload = "msg " + std::to_string(i);
      a->send(s);
    }
    // Wait for all 50 SENT (answers or the own records that replace them).
    for (uint64_t i = 1; i <= 50; ++i)
      CHECK(answer(*a, i).value == codec::message_status::sent);
    CHECK(p.signal_and_wait(SIGKILL) == 128 + SIGKILL);
  }
  parleyd_process again{dir.path(), port};
  CHECK(again.port() == port);
  auto b = test_client::connect(port, cert);
  b->login("demo", again.token("bob"), "b1");
  for (uint64_t i = 1; i <= 50; ++i) {
    auto m = b->expect<codec::message>();
    CHECK(m.seq == i);
    CHECK(m.payload == "msg " + std::to_string(i));
    b->send(codec::ack{m.seq});
  }
  b->barrier();
  CHECK(b->queued() == 0);
}

TEST_CASE("SIGTERM tells clients SHUTDOWN and exits 0") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0};
  auto a = test_client::connect(p.port(), dir.path() + "/cert.pem");
  a->login("demo", p.token("alice"), "a1");
  CHECK(p.signal_and_wait(SIGTERM) == 0);
  auto bye = a->expect<codec::goodbye>();
  CHECK(bye.reason == codec::goodbye_reason::shutdown);
  CHECK(a->wait_closed());
}

TEST_CASE("parley admin manages apps, users and tokens, with clear errors") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0};
  auto base = "--server 127.0.0.1:" + std::to_string(p.port()) +
              " --data-dir " + dir.path() + " ";
  auto [rc, out] = run_cli(base + "admin app add chat");
  CHECK(rc == 0);
  CHECK(out.find("created") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "admin app add chat");
  CHECK(rc == 1);
  CHECK(out.find("already_exists") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "admin user add chat zoe --name Zoe");
  CHECK(rc == 0);
  auto pos = out.find("token    ");
  REQUIRE(pos != std::string::npos);
  auto token = out.substr(pos + 9, out.find('\n', pos) - pos - 9);
  // The printed token logs in.
  auto z = test_client::connect(p.port(), dir.path() + "/cert.pem");
  CHECK(z->login("chat", token, "z1").address == "zoe");
  std::tie(rc, out) = run_cli(base + "admin list users chat");
  CHECK(rc == 0);
  CHECK(out.find("\"zoe\"") != std::string::npos);
  // Revoking ends the live session.
  std::tie(rc, out) = run_cli(base + "admin token revoke chat zoe");
  CHECK(rc == 0);
  CHECK(z->expect<codec::goodbye>().reason ==
        codec::goodbye_reason::auth_revoked);
  // Several at once: one "ADDRESS TOKEN" line each, from the command line
  // and from a file (what parley-sim --tokens reads).
  std::ofstream{dir.path() + "/names"} << "u3\n\nu4 \n";
  std::tie(rc, out) =
    run_cli(base + "admin user add chat u1 u2 --file " + dir.path() + "/names");
  CHECK(rc == 0);
  std::istringstream lines{out};
  std::vector<std::pair<std::string, std::string>> granted;
  for (std::string a, t; lines >> a >> t;)
    granted.emplace_back(a, t);
  REQUIRE(granted.size() == 4);
  CHECK(granted[0].first == "u1");
  CHECK(granted[3].first == "u4");
  auto u4 = test_client::connect(p.port(), dir.path() + "/cert.pem");
  CHECK(u4->login("chat", granted[3].second, "d").address == "u4");
  // A file of one address still prints "ADDRESS TOKEN"; blanks and a
  // CRLF's CR around it are not part of it.
  std::ofstream{dir.path() + "/one"} << "\t u5\r\n \r\n";
  std::tie(rc, out) =
    run_cli(base + "admin user add chat --file " + dir.path() + "/one");
  CHECK(rc == 0);
  CHECK(out.rfind("u5 pt_", 0) == 0);
  std::tie(rc, out) = run_cli(base + "admin user add chat u1 u2 --name X");
  CHECK(rc == 2);
  CHECK(out.find("--name names one user") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "admin user add chat");
  CHECK(rc == 2);
  CHECK(out.find("--file with one per line") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "admin user add nope zoe");
  CHECK(rc == 1);
  CHECK(out.find("no app 'nope'") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "--admin-key wrong admin list apps");
  CHECK(rc == 1);
  CHECK(out.find("wrong admin key") != std::string::npos);
  std::tie(rc, out) = run_cli("--server 127.0.0.1:1 --data-dir " + dir.path() +
                              " admin list apps");
  CHECK(rc == 1);
  CHECK(out.find("is parleyd running") != std::string::npos);
  // A certificate that is not the server's is not trusted.
  auto stranger = tls::generate_self_signed("stranger");
  REQUIRE(stranger.ok());
  auto stranger_pem = dir.path() + "/stranger.pem";
  std::ofstream{stranger_pem} << stranger->cert_pem;
  std::tie(rc, out) =
    run_cli("--server 127.0.0.1:" + std::to_string(p.port()) +
            " --admin-key x --ca " + stranger_pem + " admin list apps");
  CHECK(rc == 1);
  CHECK(out.find("not trusted") != std::string::npos);
}

TEST_CASE("parley send and history, with clear errors") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0};
  auto base = "--server 127.0.0.1:" + std::to_string(p.port()) +
              " --data-dir " + dir.path() + " ";
  auto alice = " --app demo --token " + p.token("alice") + " --db " +
               dir.path() + "/alice-db ";
  auto [rc, out] = run_cli(base + "send" + alice + "bob hello there");
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find("sent ") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "history" + alice + "bob");
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find("-> bob: hello there") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "send --app demo --token pt_bogus bob x");
  CHECK(rc == 1);
  CHECK(out.find("authfail") != std::string::npos);
  CHECK(out.find("not known") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "send" + alice + "nobody x");
  CHECK(rc == 1);
  CHECK(out.find("invalid_dest") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "history" + " --app demo --token x bob");
  CHECK(rc == 1);
  CHECK(out.find("--db") != std::string::npos);
}

TEST_CASE("parley group commands, with clear refusals") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0};
  auto base = "--server 127.0.0.1:" + std::to_string(p.port()) +
              " --data-dir " + dir.path() + " ";
  auto alice = " --app demo --token " + p.token("alice") + " ";
  auto bob = " --app demo --token " + p.token("bob") + " ";
  auto [rc, out] = run_cli(base + "group create" + alice + "team bob");
  REQUIRE_MESSAGE(rc == 0, out);
  CHECK_MESSAGE(out.find("'team' owner alice") != std::string::npos, out);
  CHECK(out.find("alice(admin)") != std::string::npos);
  auto id = out.substr(out.find("group ") + 6);
  id = id.substr(0, id.find(' '));
  std::tie(rc, out) = run_cli(base + "group list" + bob);
  CHECK(rc == 0);
  CHECK(out.find(id + "\tteam") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "group send" + alice + id + " hi team");
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find("sent ") != std::string::npos);
  // bob is no admin.
  std::tie(rc, out) = run_cli(base + "group remove" + bob + id + " alice");
  CHECK(rc == 1);
  CHECK(out.find("permission_denied") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "group leave" + bob + id);
  CHECK_MESSAGE(rc == 0, out);
  std::tie(rc, out) = run_cli(base + "group send" + bob + id + " still here?");
  CHECK(rc == 1);
  CHECK(out.find("not_member") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "group show" + alice + id);
  CHECK(rc == 0);
  CHECK(out.find("members: alice(admin)\n") != std::string::npos);
  std::tie(rc, out) = run_cli(base + "group delete" + alice + id);
  CHECK_MESSAGE(rc == 0, out);
  std::tie(rc, out) = run_cli(base + "group show" + alice + id);
  CHECK(rc == 1);
  CHECK(out.find("not_found") != std::string::npos);
}

TEST_CASE(
  "a real TLS client sees TLS 1.3 only, with the server's certificate") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0};
  auto target = " -connect 127.0.0.1:" + std::to_string(p.port()) +
                " -CAfile " + dir.path() + "/cert.pem -verify_return_error";
  auto run = [](const std::string& args) {
    return run_command("openssl s_client" + args + " </dev/null");
  };

  auto [rc, out] = run(target + " -tls1_3");
  CHECK(rc == 0);
  CHECK(out.find("TLSv1.3") != std::string::npos);
  CHECK(out.find("Verify return code: 0 (ok)") != std::string::npos);
  std::tie(rc, out) = run(target + " -tls1_2");
  CHECK(rc != 0); // TLS 1.2 only with parleyd --tls12
  CHECK(out.find("alert protocol version") != std::string::npos);
  CHECK(out.find("Cipher is (NONE)") != std::string::npos);
}

TEST_CASE("with --tls12, TLS 1.2 is served with forward-secret AEAD ciphers "
          "only") {
  temp_dir dir;
  parleyd_process p{dir.path(), 0, {"--tls12"}};
  auto target = " -connect 127.0.0.1:" + std::to_string(p.port()) +
                " -CAfile " + dir.path() + "/cert.pem -verify_return_error";
  auto run = [](const std::string& args) {
    return run_command("openssl s_client" + args + " </dev/null");
  };
  auto [rc, out] = run(target + " -tls1_2");
  CHECK(rc == 0);
  CHECK(out.find("ECDHE-ECDSA-AES") != std::string::npos);
  // CBC, and no forward secrecy: refused.
  for (auto weak : {"ECDHE-ECDSA-AES128-SHA", "AES128-SHA", "AES256-SHA256"}) {
    std::tie(rc, out) = run(target + " -tls1_2 -cipher " + weak);
    CHECK_MESSAGE(rc != 0, weak);
    CHECK(out.find("Cipher is (NONE)") != std::string::npos);
  }
}

// -- parley-sim
// ------------------------------------------------------------------

TEST_CASE("parley-sim runs every scenario on a parleyd of its own, verified") {
  const std::string spawn = "--spawn-server --server-threads 1 --users 20 ";
  SUBCASE("chat, closed loop") {
    auto r = run_sim(spawn + "chat --duration 1");
    check_verified(r);
    CHECK(r.report["mode"] == "closed");
    CHECK(r.report["delivered"].get<uint64_t>() > 0);
    CHECK(r.report["delivered"] == r.report["sent"]);
    CHECK(r.report["latency_ms"]["p99"].get<double>() > 0);
    // SENT comes after a round trip and a commit: never 0, and the
    // percentiles are in order.
    auto& sent = r.report["sent_latency_ms"];
    CHECK(sent["p50"].get<double>() > 0);
    CHECK(sent["p50"].get<double>() <= sent["p99"].get<double>());
    CHECK(sent["p99"].get<double>() <= sent["max"].get<double>());
    CHECK(r.report["server_rss_mb"].get<double>() > 0);
  }
  SUBCASE("chat, open loop") {
    auto r = run_sim(spawn + "chat --rate 400 --duration 1");
    check_verified(r);
    CHECK(r.report["mode"] == "open");
    // 400 messages/s for a second: the schedule says 400, give or take
    // the last tick.
    CHECK(r.report["attempted"].get<uint64_t>() >= 390);
    CHECK(r.report["attempted"].get<uint64_t>() <= 400);
    CHECK(r.report["sent_latency_ms"]["p50"].get<double>() > 0);
    // How late the simulator itself sent (it sleeps up to 250 us between
    // ticks): measured, so the largest lag is above 0.
    auto& lag = r.report["send_lag_ms"];
    CHECK(lag["max"].get<double>() > 0);
    CHECK(lag["p50"].get<double>() <= lag["max"].get<double>());
  }
  SUBCASE("pairs without receipts") {
    auto r = run_sim(spawn + "pairs --duration 1 --no-receipts");
    check_verified(r);
    CHECK(r.report["delivered"].get<uint64_t>() > 0);
  }
  SUBCASE("groups: each member gets each message once, in order") {
    auto r = run_sim(spawn + "groups --group-size 7 --duration 1 --settle 60");
    check_verified(r);
    CHECK(r.report["groups"] == 3); // 7 + 7 + 6 members
    CHECK(r.report["delivered"].get<uint64_t>() > 0);
    CHECK(r.report["delivered"] == r.report["sent"]);
  }
  SUBCASE("storm") {
    auto r = run_sim(spawn + "storm --idle 0");
    check_verified(r);
    CHECK(r.report["login_failures"] == 0);
    CHECK(r.report["login_s"].get<double>() > 0);
  }
  SUBCASE("offline drain") {
    auto r = run_sim(spawn + "offline --messages 2000");
    check_verified(r);
    CHECK(r.report["delivered"] == 2000);
    CHECK(r.report["drain_per_s"].get<double>() > 0);
  }
}

TEST_CASE("parley-sim against a running parleyd: users made once, then read") {
  temp_dir dir;
  parleyd_process srv{dir.path() + "/data", 0};
  auto tokens = dir.path() + "/tokens.txt";
  auto common = "--server 127.0.0.1:" + std::to_string(srv.port()) +
                " --data-dir " + dir.path() + "/data --tokens " + tokens +
                " --users 10 ";
  auto first = run_sim(common + "pairs --duration 0.5");
  check_verified(first);
  std::ifstream in{tokens};
  std::string user, token;
  int lines = 0;
  while (in >> user >> token)
    ++lines;
  CHECK(lines == 10);
  // The second run logs in with the saved tokens (no admin key needed).
  auto second = run_sim("--server 127.0.0.1:" + std::to_string(srv.port()) +
                        " --ca " + dir.path() + "/data/cert.pem --tokens " +
                        tokens + " --users 10 chat --duration 0.5");
  check_verified(second);
}

TEST_CASE("parley-sim says what is wrong when it cannot run") {
  auto r = run_command(std::string{PARLEY_SIM} +
                       " --server 127.0.0.1:1 --admin-key k --users 5 chat");
  CHECK(r.first == 2);
  CHECK(r.second.find("parley-sim: ") != std::string::npos);
  auto odd =
    run_command(std::string{PARLEY_SIM} + " --spawn-server --users 5 pairs");
  CHECK(odd.first == 2);
  CHECK(odd.second.find("even number of users") != std::string::npos);
  auto none = run_command(std::string{PARLEY_SIM} + " --users 5 chat");
  CHECK(none.first == 2);
  CHECK(none.second.find("--tokens") != std::string::npos);
}
