#pragma once

// RAII wrappers around LMDB (lmdb.h): an environment (one data directory),
// transactions, named databases and cursors. Pure C++: no actors, no sockets.
// The server's and the client's tables are built on top of this layer.
//
//   auto e = store::env::open("/var/lib/parley", {}); // result<unique_ptr>
//   auto log = (*e)->open_dbi("log");                  // result<dbi>
//   auto st = (*e)->write([&](store::txn& t) {         // grows the map on
//     return t.put(*log, key, value);                  // MDB_MAP_FULL
//   });
//   auto r = (*e)->begin_read();                       // result<txn>
//   auto v = r->get(*log, key); // result<optional<string_view>>
//
// Errors: every failure is a parley::status whose message names the
// operation, the database, the data directory and LMDB's text. MDB_NOTFOUND
// from del() is status_code::not_found; get() reports "absent" as an empty
// optional (no allocation) and cursors as `valid() == false`.
//
// Threading (LMDB's rules, made explicit; the environment is opened with
// MDB_NOTLS):
// - env: open_dbi, begin_read, begin_write, write, sync, stats, grow,
//   reader_check and map_size may be called from any thread concurrently.
//   Destroying the env REQUIRES that no txn or cursor of it is alive.
// - One environment per data directory per process: a second env::open of the
//   same directory fails (LMDB's locks are per process). Share the env.
// - Write transactions: one at a time per environment, process-wide and across
//   processes. begin_write blocks while another write txn is open, so a thread
//   that already holds one and begins another deadlocks. A write txn must be
//   begun, used and committed or aborted on ONE OS thread (LMDB's writer lock
//   is a mutex): in an actor, begin and commit inside one handler.
// - Read transactions: any number, each holding one slot of the reader table
//   (env_options::max_readers) until it ends: keep them short. Thanks to
//   MDB_NOTLS a read txn may move between threads, but must not be used by
//   two threads at once.
// - A txn, and the cursors and string_views it hands out, are not
//   thread-safe: one thread at a time.
// - Growing the map (env::grow, and env::write on MDB_MAP_FULL) waits until
//   every txn of this env in this process has ended, and holds new ones back
//   meanwhile. A thread that holds a txn while it grows the map therefore
//   waits env_options::grow_timeout and then gets status_code::unavailable.
//   A long read txn delays growth by as long.
//
// Lifetimes: a string_view returned by get() or a cursor points into the map.
// It is valid until its txn ends; in a write txn, only until the next put,
// reserve or del in that txn. A dbi handle is valid until the env is
// destroyed. A cursor belongs to its txn: when the txn ends, the cursor is
// closed (its calls then fail with failed_precondition).

#include <parley/status.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace parley::store {

class env;
class txn;
class cursor;

/// Settings of an environment, fixed at env::open.
struct env_options {
  /// Initial map size in bytes (the most data the file may hold before the
  /// map grows). Virtual memory only: the file grows as data is written. An
  /// existing environment that grew larger keeps its larger size.
  uint64_t map_size = uint64_t{1} << 30;

  /// The map doubles on MDB_MAP_FULL up to this size; beyond it writes fail
  /// with status_code::resource_exhausted. At the limit even deletions may
  /// fail (LMDB needs free pages to delete): the remedy is a larger limit.
  uint64_t max_map_size = uint64_t{64} << 30;

  /// Size of the reader table: at most this many read txns at once across
  /// all processes using the directory.
  unsigned max_readers = 512;

  /// At most this many named databases.
  unsigned max_dbs = 32;

  /// False sets MDB_NOSYNC: commits do not fsync. Faster, but a system crash
  /// may lose the last commits or, with a non-ordering file system, corrupt
  /// the database. For benchmarks and tests.
  bool sync = true;

  /// Permissions of data.mdb and lock.mdb when they are created.
  mode_t mode = 0600;

  /// How long growing the map waits for open transactions to end.
  std::chrono::milliseconds grow_timeout{10000};
};

/// Figures about an environment.
struct env_stats {
  uint64_t map_size = 0;         ///< Current map size in bytes.
  uint64_t max_map_size = 0;     ///< env_options::max_map_size.
  uint64_t page_size = 0;        ///< Database page size in bytes.
  uint64_t used_pages = 0;       ///< Pages in use (last page number + 1).
  uint64_t used_bytes = 0;       ///< used_pages * page_size.
  uint64_t last_txn_id = 0;      ///< ID of the last committed write txn.
  unsigned max_readers = 0;      ///< Size of the reader table.
  unsigned readers = 0;          ///< Reader slots ever used (may include free).
  uint64_t grows = 0;            ///< Times this env object grew the map.
  int stale_readers_cleared = 0; ///< Slots of dead processes freed by open.
};

/// Flags of a named database.
enum class dbi_flags : unsigned {
  none = 0,
  reverse_key = 0x02, ///< MDB_REVERSEKEY: compare keys from their last byte.
  integer_key = 0x08, ///< MDB_INTEGERKEY: keys are native uint32 or uint64.
};

/// Flags of put and reserve.
enum class put_flags : unsigned {
  none = 0,
  /// MDB_NOOVERWRITE: fail with already_exists when the key exists.
  no_overwrite = 0x10,
  /// MDB_APPEND: the key sorts after every key of the database (checked:
  /// otherwise fails with already_exists). Faster bulk loading.
  append = 0x20000,
};

/// Combines put flags.
constexpr put_flags operator|(put_flags a, put_flags b) noexcept {
  return static_cast<put_flags>(static_cast<unsigned>(a) |
                                static_cast<unsigned>(b));
}

/// A writable region of the map, handed out by txn::reserve.
struct mutable_span {
  char* data = nullptr; ///< First byte.
  size_t size = 0;      ///< Length in bytes.
};

/// Handle of a named database (a sorted key space) inside an env. A plain
/// value: copy it freely. The default-constructed handle is invalid.
class dbi {
 public:
  /// An invalid handle.
  constexpr dbi() noexcept = default;

  /// Wraps an LMDB handle.
  constexpr explicit dbi(unsigned id) noexcept : id_(id) {
    // nop
  }

  /// LMDB's MDB_dbi.
  constexpr unsigned id() const noexcept { return id_; }

  /// False for the default-constructed handle.
  constexpr bool valid() const noexcept { return id_ != 0; }

 private:
  unsigned id_ = 0; // 0 is LMDB's internal free list: never a user handle.
};

/// Position in one database of one txn, for range scans:
///
///   auto c = t.open_cursor(log);
///   if (!c) return c.error();
///   status s;
///   for (s = c->seek(from); s.ok() && c->valid() && c->key() < to;
///        s = c->next())
///     use(c->key(), c->value());
///   if (!s) return s;
///
/// Positioning calls return OK when they land on an entry (`valid()`) and
/// also when there is none (`!valid()`); they return an error only when LMDB
/// fails.
class cursor {
 public:
  /// A closed cursor.
  cursor() noexcept = default;

  cursor(cursor&& other) noexcept;
  cursor& operator=(cursor&& other) noexcept;
  cursor(const cursor&) = delete;
  cursor& operator=(const cursor&) = delete;

  /// Closes the cursor.
  ~cursor();

  /// True when positioned on an entry.
  bool valid() const noexcept { return valid_; }

  /// Key of the current entry. REQUIRES: valid().
  std::string_view key() const noexcept { return key_; }

  /// Value of the current entry. REQUIRES: valid().
  std::string_view value() const noexcept { return value_; }

  /// Moves to the first entry.
  status first();

  /// Moves to the last entry.
  status last();

  /// Moves to the next entry. REQUIRES: valid(), or just after del().
  status next();

  /// Moves to the previous entry. REQUIRES: valid(), or just after del().
  status prev();

  /// Moves to the first entry whose key is >= `key` (MDB_SET_RANGE); an
  /// empty `key` means first().
  status seek(std::string_view key);

  /// Moves to the last entry whose key is <= `key`: where backward scans
  /// start.
  status seek_for_prev(std::string_view key);

  /// Writes `key` = `value` (mdb_cursor_put) and leaves the cursor on it, but
  /// not valid() (seek to read). Cheaper than txn::put for keys in order:
  /// LMDB searches from the root only when the key is not on the cursor's
  /// page. REQUIRES: a write txn.
  status put(std::string_view key, std::string_view value,
             put_flags flags = put_flags::none);

  /// Deletes the current entry. Afterwards `valid()` is false, and next() or
  /// prev() move to the entry after or before the deleted one. REQUIRES:
  /// valid(), a write txn.
  status del();

  /// Closes the cursor now (the destructor does it otherwise).
  void close() noexcept;

  /// True until closed, or until its txn ended.
  bool is_open() const noexcept { return cur_ != nullptr; }

 private:
  friend class txn;

  status step(int op, const char* what);
  status land(int rc, const void* k, size_t kn, const void* v, size_t vn,
              const char* what);
  status not_open(const char* what) const;
  void unlink() noexcept;
  void take(cursor& other) noexcept;

  MDB_cursor* cur_ = nullptr;
  txn* txn_ = nullptr;
  cursor* prev_ = nullptr; // Siblings in txn_'s list of open cursors.
  cursor* next_ = nullptr;
  dbi db_;
  bool valid_ = false;
  bool deleted_ = false;
  std::string_view key_;
  std::string_view value_;
};

/// A read-only or read-write transaction. Ends (aborts) when destroyed unless
/// committed. Begin one with env::begin_read, env::begin_write or env::write.
class txn {
 public:
  /// An ended transaction.
  txn() noexcept = default;

  txn(txn&& other) noexcept;
  txn& operator=(txn&& other) noexcept;
  txn(const txn&) = delete;
  txn& operator=(const txn&) = delete;

  /// Aborts the transaction if still active.
  ~txn();

  /// True until commit() or abort().
  bool active() const noexcept { return txn_ != nullptr; }

  /// True for a read txn.
  bool read_only() const noexcept { return read_only_; }

  /// The environment (nullptr for a default-constructed txn).
  store::env* owner() const noexcept { return env_; }

  /// True after an operation of this txn failed with MDB_MAP_FULL: the txn
  /// cannot commit; abort it, env::grow(), and redo it (env::write does).
  bool map_full() const noexcept { return map_full_; }

  /// Opens (creating it if needed) the named database `name`. The handle
  /// stays valid until the env is destroyed, but other txns may use it only
  /// after this txn commits: open databases at start-up. REQUIRES: a write
  /// txn. Errors: invalid_argument (empty name), resource_exhausted (more
  /// than env_options::max_dbs), failed_precondition (flags differ from the
  /// existing database's).
  result<dbi> open_dbi(std::string_view name,
                       dbi_flags flags = dbi_flags::none);

  /// Looks `key` up: the value, or an empty optional when absent. The view
  /// points into the map (see Lifetimes above).
  result<std::optional<std::string_view>> get(dbi db,
                                              std::string_view key) const;

  /// Stores `value` under `key`, replacing an existing value unless
  /// put_flags::no_overwrite (then: already_exists). REQUIRES: a write txn.
  /// Errors: invalid_argument (key empty or longer than the env's maximum),
  /// resource_exhausted (map full: see map_full()).
  status put(dbi db, std::string_view key, std::string_view value,
             put_flags flags = put_flags::none);

  /// Stores a value of `size` bytes under `key` without writing it
  /// (MDB_RESERVE) and returns where to write it: encode directly into the
  /// map. The span is valid until the next put/reserve/del or the end of
  /// this txn, and must be filled before then. Errors as for put().
  result<mutable_span> reserve(dbi db, std::string_view key, size_t size,
                               put_flags flags = put_flags::none);

  /// Deletes `key`. Errors: not_found when absent, as for put() otherwise.
  status del(dbi db, std::string_view key);

  /// Deletes every entry of `db` (mdb_drop without deleting the database):
  /// the pages go back to the free list without being rewritten. Cursors on
  /// `db` must be closed first.
  status clear(dbi db);

  /// Number of entries in `db`.
  result<uint64_t> entries(dbi db) const;

  /// Pages on LMDB's free list as this txn sees them (what `mdb_stat -f`
  /// counts): free for reuse below env_stats::used_pages, so used_pages
  /// minus these is what the data really occupies. Read-only txns only
  /// (LMDB refuses a cursor on its free list in a write txn).
  result<uint64_t> free_pages() const;

  /// Opens a cursor on `db`. It is closed when this txn ends.
  result<cursor> open_cursor(dbi db);

  /// Makes the writes durable (unless env_options::sync is false) and ends
  /// the txn, also on failure. For a read txn, ends it. Errors:
  /// resource_exhausted (map or disk full), io_error.
  status commit();

  /// Discards the writes and ends the txn. No-op when not active.
  void abort() noexcept;

 private:
  friend class env;
  friend class cursor;

  txn(store::env* e, MDB_txn* t, bool read_only) noexcept
    : env_(e), txn_(t), read_only_(read_only) {
    // nop
  }

  void end() noexcept;
  void take(txn& other) noexcept;
  status fail(int rc, const char* what, dbi db) const;
  status check_key(std::string_view key, const char* what, dbi db) const;
  status check_write(const char* what, dbi db) const;

  store::env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  bool read_only_ = false;
  bool map_full_ = false;
  cursor* cursors_ = nullptr; // Open cursors, closed when the txn ends.
};

/// An LMDB environment: one data directory (data.mdb + lock.mdb). Create
/// with open(); shared by all threads of the process (see Threading).
class env {
 public:
  /// Opens (creating the directory and the database if missing) the
  /// environment in `dir` with MDB_NOTLS, sets map size, reader table and
  /// database count, and frees reader slots left by dead processes
  /// (mdb_reader_check). Errors: invalid_argument (bad options),
  /// failed_precondition (`dir` already open in this process), io_error or
  /// permission_denied (directory or files), corruption, version_mismatch
  /// (files of another LMDB format).
  static result<std::unique_ptr<env>> open(const std::string& dir,
                                           const env_options& opts = {});

  /// Closes the environment. REQUIRES: no txn or cursor of it is alive.
  ~env();

  env(const env&) = delete;
  env& operator=(const env&) = delete;

  /// The data directory, as an absolute path.
  const std::string& path() const noexcept { return path_; }

  /// The options given to open().
  const env_options& options() const noexcept { return opts_; }

  /// Longest accepted key in bytes (mdb_env_get_maxkeysize).
  size_t max_key_size() const noexcept { return max_key_size_; }

  /// Current map size in bytes.
  uint64_t map_size() const noexcept { return map_size_.load(); }

  /// Begins a read txn (takes a reader slot until it ends). Errors:
  /// resource_exhausted (reader table full).
  result<txn> begin_read();

  /// Begins a write txn; blocks while another write txn is open (see
  /// Threading). Does not grow the map: prefer write().
  result<txn> begin_write();

  /// Runs `fn(txn&) -> status` in a write txn and commits it when `fn`
  /// returns OK; aborts it and returns fn's error otherwise. When the map is
  /// full (a put inside `fn` or the commit failed with MDB_MAP_FULL), aborts,
  /// doubles the map (up to max_map_size) and runs `fn` again on a fresh txn:
  /// `fn` may run more than once, so it must not have effects outside the
  /// txn that a rerun would repeat. `fn` must not commit or abort the txn,
  /// nor begin another txn of this env. Errors: fn's, commit's, and
  /// resource_exhausted when the map cannot grow further.
  template<class Fn>
  status write(Fn&& fn);

  /// Opens (creating it if needed) a named database in its own write txn.
  /// Errors as for txn::open_dbi.
  result<dbi> open_dbi(std::string_view name,
                       dbi_flags flags = dbi_flags::none);

  /// Flushes to disk (mdb_env_sync, forced): makes commits made with
  /// `sync == false` durable.
  status sync();

  /// Map, page and reader figures.
  result<env_stats> stats() const;

  /// Doubles the map size, up to max_map_size. Waits for every txn of this
  /// env in this process to end, holding new ones back (see Threading).
  /// REQUIRES: the calling thread holds no txn of this env. Errors:
  /// resource_exhausted (already at max_map_size), unavailable (txns stayed
  /// open longer than grow_timeout).
  status grow();

  /// Frees reader slots held by dead processes; returns how many.
  result<int> reader_check();

 private:
  env(MDB_env* handle, std::string path, const env_options& opts);

  result<txn> begin(bool read_only);
  status grow_from(uint64_t seen);
  status resize_locked(uint64_t new_size);
  void enter_txn() noexcept;
  void leave_txn() noexcept;
  std::string dbi_name(dbi db) const;
  void set_dbi_name(dbi db, std::string_view name);

  friend class txn;
  friend class cursor;

  MDB_env* env_;
  std::string path_;
  env_options opts_;
  size_t max_key_size_ = 0;
  int stale_readers_cleared_ = 0;
  std::atomic<uint64_t> map_size_{0};
  std::atomic<uint64_t> grows_{0};

  // Gate that lets growth wait for open txns: every txn counts itself in
  // active_; while growing_ is set, new txns wait on gate_cv_.
  std::atomic<uint32_t> active_{0};
  std::atomic<bool> growing_{false};
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  std::mutex grow_mu_; // Serialises growers.

  mutable std::mutex names_mu_;
  std::vector<std::string> names_; // dbi id -> name, for error messages.
};

/// A named database and where its handle goes (see open_tables).
struct table_ref {
  dbi* handle;
  const char* name;
};

/// Opens (creating them if needed) every named database of `tables` in the
/// write txn `t` and stores their handles. Errors as for txn::open_dbi.
status open_tables(txn& t, std::initializer_list<table_ref> tables);

/// Checks the on-disk format version of a data directory, stored big-endian
/// in `meta` under `name`. When absent, stores `current` (REQUIRES: a write
/// txn then). When stored and newer than `current`, fails with
/// version_mismatch: "data directory X has format N ..., this build knows up
/// to M: upgrade". An older stored version is accepted and left as it is:
/// the caller migrates, then calls set_format. `stored`, when given,
/// receives the version found (or `current` when it was absent). Errors:
/// corruption when the record is not 4 bytes.
status check_format(txn& t, dbi meta, std::string_view name, uint32_t current,
                    uint32_t* stored = nullptr);

/// Stores format version `version` under `name` in `meta`. REQUIRES: a
/// write txn.
status set_format(txn& t, dbi meta, std::string_view name, uint32_t version);

/// Deletes every entry of `db` whose key starts with `prefix`. REQUIRES: a
/// write txn.
status delete_prefix(txn& t, dbi db, std::string_view prefix);

// -- inline implementation
// ---------------------------------------------------------

template<class Fn>
status env::write(Fn&& fn) {
  for (;;) {
    uint64_t seen = map_size();
    auto t = begin_write();
    if (!t)
      return t.error();
    status st = fn(*t);
    if (st.ok()) {
      if (!t->active())
        return status{status_code::internal,
                      "env::write: the callback ended the transaction"};
      st = t->commit();
      if (st.ok())
        return st;
    }
    bool full = t->map_full();
    t->abort();
    if (!full)
      return st;
    if (auto g = grow_from(seen); !g.ok())
      return g;
  }
}

} // namespace parley::store
