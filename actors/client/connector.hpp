#pragma once

// Non-blocking TCP connects for a whole runtime on one thread: CAF 0.17's
// add_tcp_scribe(host, port) resolves and connects blocking on the
// multiplexer thread, which would freeze every connection of the runtime.
// The connector resolves, connects with a deadline, and hands the connected
// socket back through a callback (which then adopts it in a broker).
// No CAF here.
//
// Thread-safety: connect() and the destructor may be called from any
// thread. Callbacks run on the connector's thread, once per request; they
// must be quick (send a message and return).

#include <parley/status.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parley::net {

class connector {
 public:
  /// Gets a connected, blocking-mode-agnostic socket (owned by the callee)
  /// or the reason it failed.
  using callback = std::function<void(int fd, status st)>;

  connector();
  ~connector(); ///< Fails pending requests with cancelled, joins the thread.

  connector(const connector&) = delete;
  connector& operator=(const connector&) = delete;

  /// Starts connecting to host:port; `done` runs when connected, failed or
  /// after `timeout`.
  void connect(std::string host, uint16_t port,
               std::chrono::milliseconds timeout, callback done);

 private:
  struct request {
    std::string host;
    uint16_t port;
    std::chrono::steady_clock::time_point deadline;
    callback done;
  };
  struct pending {
    int fd;
    std::string where;
    std::chrono::steady_clock::time_point deadline;
    callback done;
  };

  void run();
  void begin(request& r);

  std::mutex mtx_;
  std::deque<request> queue_;
  bool stop_ = false;
  int wake_[2] = {-1, -1};
  std::vector<pending> pending_; // connector thread only
  std::thread thread_;
};

} // namespace parley::net
