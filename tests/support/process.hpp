#pragma once

// Process-level test helpers: parleyd as a child process, shell commands,
// the parley CLI and parley-sim runs with their JSON reports. Used by
// tests/e2e/process_test.cpp and tests/fault/fault_test.cpp, which define
// PARLEY_PARLEYD, PARLEY_CLI and PARLEY_SIM (paths of the built programs).

#include "tests/support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace parley::test {

/// A parleyd child process.
class parleyd_process {
 public:
  /// Starts parleyd with the demo app on `data_dir` and `port` (0: any),
  /// plus `extra` arguments, and waits until it listens.
  parleyd_process(const std::string& data_dir, uint16_t port,
                  std::vector<std::string> extra = {}) {
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<std::string> args{
        "parleyd", "--data-dir",  data_dir, "--port",    std::to_string(port),
        "--demo",  "--log-level", "warn",   "--threads", "2"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& x : args)
        argv.push_back(x.data());
      argv.push_back(nullptr);
      ::execv(PARLEY_PARLEYD, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    // Read stdout until parleyd says where it listens.
    std::string text;
    char buf[512];
    while (text.find("parleyd listening on") == std::string::npos) {
      auto n = ::read(out[0], buf, sizeof(buf));
      REQUIRE_MESSAGE(n > 0, "parleyd exited before listening: " << text);
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    auto pos = text.find("parleyd listening on");
    auto line = text.substr(pos, text.find('\n', pos) - pos);
    port_ = static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    std::ifstream tokens{data_dir + "/demo-tokens.txt"};
    std::string user, token;
    while (tokens >> user >> token)
      tokens_[user] = token;
    REQUIRE(tokens_.size() == 2);
  }

  ~parleyd_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  /// Sends `sig` and returns the exit status (or 128 + signal).
  int signal_and_wait(int sig) {
    ::kill(pid_, sig);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& token(const std::string& user) { return tokens_[user]; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::map<std::string, std::string> tokens_;
};

/// Runs a shell command; returns (exit code, stdout + stderr).
inline std::pair<int, std::string> run_command(const std::string& command) {
  std::string cmd = command + " 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
    out.append(buf, n);
  int st = ::pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

/// Runs the parley CLI with `args`.
inline std::pair<int, std::string> run_cli(const std::string& args) {
  return run_command(std::string{PARLEY_CLI} + " " + args);
}

/// Runs parley-sim with `args`; returns its exit code, output and report.
struct sim_run {
  int code = -1;
  std::string output;
  nlohmann::json report;
};

inline sim_run run_sim(const std::string& args) {
  temp_dir dir;
  auto file = dir.path() + "/report.json";
  auto [code, out] =
    run_command(std::string{PARLEY_SIM} + " -q --json " + file + " " + args);
  sim_run r{code, out, {}};
  std::ifstream in{file};
  if (in)
    r.report = nlohmann::json::parse(in, nullptr, false);
  return r;
}

inline void check_verified(const sim_run& r) {
  CHECK_MESSAGE(r.code == 0, r.output);
  REQUIRE_MESSAGE(r.report.is_object(), r.output);
  CHECK(r.report["lost"] == 0);
  CHECK(r.report["duplicated"] == 0);
  CHECK(r.report["reordered"] == 0);
  CHECK(r.report["pending"] == 0);
  CHECK(r.report["verified"] == true);
}

} // namespace parley::test
