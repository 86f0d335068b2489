#include "store/lmdb.hpp"

#include "store/keys.hpp"

#include <lmdb.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <set>
#include <system_error>
#include <type_traits>

namespace parley::store {

static_assert(std::is_same_v<MDB_dbi, unsigned>);
static_assert(static_cast<unsigned>(dbi_flags::reverse_key) == MDB_REVERSEKEY);
static_assert(static_cast<unsigned>(dbi_flags::integer_key) == MDB_INTEGERKEY);
static_assert(static_cast<unsigned>(put_flags::no_overwrite) ==
              MDB_NOOVERWRITE);
static_assert(static_cast<unsigned>(put_flags::append) == MDB_APPEND);

namespace {

/// "256 KiB", "64 GiB", "1000 bytes".
std::string size_text(uint64_t n) {
  static constexpr const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (u + 1 < std::size(units) && n >= 1024 && n % 1024 == 0) {
    n /= 1024;
    ++u;
  }
  return std::to_string(n) + " " + units[u];
}

status_code code_of(int rc) noexcept {
  switch (rc) {
  case MDB_NOTFOUND:
    return status_code::not_found;
  case MDB_KEYEXIST:
    return status_code::already_exists;
  case MDB_MAP_FULL:
  case MDB_READERS_FULL:
  case MDB_TXN_FULL:
  case MDB_CURSOR_FULL:
  case MDB_DBS_FULL:
  case MDB_TLS_FULL:
  case MDB_PAGE_FULL:
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
  case ENOMEM:
    return status_code::resource_exhausted;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
    return status_code::corruption;
  case MDB_VERSION_MISMATCH:
    return status_code::version_mismatch;
  case MDB_MAP_RESIZED:
    return status_code::unavailable;
  case MDB_INCOMPATIBLE:
  case MDB_BAD_TXN:
  case MDB_BAD_RSLOT:
  case MDB_BAD_DBI:
    return status_code::failed_precondition;
  case MDB_BAD_VALSIZE:
  case EINVAL:
    return status_code::invalid_argument;
  case EACCES:
  case EPERM:
  case EROFS:
    return status_code::permission_denied;
  default:
    return status_code::io_error;
  }
}

const char* hint_of(int rc) noexcept {
  switch (rc) {
  case MDB_MAP_FULL:
    return " (the database is full: env::write grows the map up to "
           "env_options::max_map_size)";
  case MDB_READERS_FULL:
    return " (every reader slot is taken: keep read transactions short or "
           "raise env_options::max_readers)";
  case MDB_DBS_FULL:
    return " (raise env_options::max_dbs)";
  case MDB_INCOMPATIBLE:
    return " (the database exists with other flags)";
  case MDB_PANIC:
    return " (fatal LMDB error: restart the process)";
  case ENOSPC:
  case EDQUOT:
    return " (the disk is full: free disk space)";
  case EFBIG:
    return " (the file may not grow: a file size limit (ulimit -f) or the "
           "file system's largest file)";
  default:
    return "";
  }
}

/// "<what> '<db>' in <path>: <LMDB's text><hint>".
status lmdb_error(int rc, std::string_view what, const std::string& path,
                  std::string_view db = {}) {
  std::string msg{what};
  if (!db.empty()) {
    msg += " '";
    msg += db;
    msg += "'";
  }
  msg += " in ";
  msg += path;
  msg += ": ";
  msg += mdb_strerror(rc);
  msg += hint_of(rc);
  return status{code_of(rc), std::move(msg)};
}

MDB_val to_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// LMDB forbids opening one environment twice in a process (closing either
// handle would drop the other's locks): directories open in this process.
std::mutex open_dirs_mu;
std::set<std::string> open_dirs;

} // namespace

// -- env ----------------------------------------------------------------------

env::env(MDB_env* handle, std::string path, const env_options& opts)
  : env_(handle), path_(std::move(path)), opts_(opts) {
  // nop
}

env::~env() {
  mdb_env_close(env_);
  std::lock_guard<std::mutex> guard{open_dirs_mu};
  open_dirs.erase(path_);
}

result<std::unique_ptr<env>> env::open(const std::string& dir,
                                       const env_options& opts) {
  namespace fs = std::filesystem;
  if (dir.empty())
    return status{status_code::invalid_argument,
                  "open LMDB environment: empty data directory path"};
  if (opts.map_size == 0 || opts.max_map_size < opts.map_size)
    return status{status_code::invalid_argument,
                  "open LMDB environment in " + dir +
                    ": need 0 < map_size <= max_map_size"};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return status{status_code::io_error,
                  "create data directory " + dir + ": " + ec.message()};
  auto abs = fs::canonical(dir, ec);
  if (ec)
    return status{status_code::io_error,
                  "resolve data directory " + dir + ": " + ec.message()};
  std::string path = abs.string();
  if (!fs::is_directory(abs, ec))
    return status{status_code::invalid_argument,
                  "data directory " + path + " is not a directory"};
  bool existed = fs::exists(abs / "data.mdb", ec);
  {
    std::lock_guard<std::mutex> guard{open_dirs_mu};
    if (!open_dirs.insert(path).second)
      return status{status_code::failed_precondition,
                    "data directory " + path +
                      " is already open in this process: share its "
                      "store::env"};
  }
  auto release_dir = [&path] {
    std::lock_guard<std::mutex> guard{open_dirs_mu};
    open_dirs.erase(path);
  };
  MDB_env* handle = nullptr;
  if (int rc = mdb_env_create(&handle); rc != 0) {
    release_dir();
    return lmdb_error(rc, "mdb_env_create for", path);
  }
  auto fail = [&](int rc, const char* what) -> status {
    mdb_env_close(handle);
    release_dir();
    return lmdb_error(rc, what, path);
  };
  if (int rc = mdb_env_set_maxreaders(handle, opts.max_readers); rc != 0)
    return fail(rc, "mdb_env_set_maxreaders");
  if (int rc = mdb_env_set_maxdbs(handle, opts.max_dbs); rc != 0)
    return fail(rc, "mdb_env_set_maxdbs");
  // A new database starts at map_size. An existing one keeps the size
  // stored in it (it may have grown) and is raised to map_size below.
  if (!existed) {
    if (int rc = mdb_env_set_mapsize(handle, opts.map_size); rc != 0)
      return fail(rc, "mdb_env_set_mapsize");
  }
  unsigned flags = MDB_NOTLS | (opts.sync ? 0u : unsigned{MDB_NOSYNC});
  if (int rc = mdb_env_open(handle, path.c_str(), flags, opts.mode); rc != 0)
    return fail(rc, "mdb_env_open");
  MDB_envinfo info;
  if (int rc = mdb_env_info(handle, &info); rc != 0)
    return fail(rc, "mdb_env_info");
  if (info.me_mapsize < opts.map_size) {
    if (int rc = mdb_env_set_mapsize(handle, opts.map_size); rc != 0)
      return fail(rc, "mdb_env_set_mapsize");
    if (int rc = mdb_env_info(handle, &info); rc != 0)
      return fail(rc, "mdb_env_info");
  }
  int dead = 0;
  if (int rc = mdb_reader_check(handle, &dead); rc != 0)
    return fail(rc, "mdb_reader_check");
  std::unique_ptr<env> e{new env(handle, path, opts)};
  e->max_key_size_ = static_cast<size_t>(mdb_env_get_maxkeysize(handle));
  e->stale_readers_cleared_ = dead;
  e->map_size_.store(info.me_mapsize);
  return e;
}

result<txn> env::begin_read() {
  return begin(true);
}

result<txn> env::begin_write() {
  return begin(false);
}

result<txn> env::begin(bool read_only) {
  for (int attempt = 0;; ++attempt) {
    enter_txn();
    MDB_txn* t = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, read_only ? MDB_RDONLY : 0, &t);
    if (rc == 0)
      return txn{this, t, read_only};
    leave_txn();
    if (rc == MDB_MAP_RESIZED && attempt == 0) {
      // Another process grew the map: adopt its size, then retry.
      std::lock_guard<std::mutex> guard{grow_mu_};
      if (auto st = resize_locked(0); !st.ok())
        return st;
      continue;
    }
    return lmdb_error(
      rc, read_only ? "begin read transaction" : "begin write transaction",
      path_);
  }
}

result<dbi> env::open_dbi(std::string_view name, dbi_flags flags) {
  dbi out;
  auto st = write([&](txn& t) -> status {
    auto d = t.open_dbi(name, flags);
    if (!d)
      return d.error();
    out = *d;
    return {};
  });
  if (!st.ok())
    return st;
  return out;
}

status env::sync() {
  if (int rc = mdb_env_sync(env_, 1); rc != 0)
    return lmdb_error(rc, "mdb_env_sync", path_);
  return {};
}

result<env_stats> env::stats() const {
  MDB_envinfo info;
  if (int rc = mdb_env_info(env_, &info); rc != 0)
    return lmdb_error(rc, "mdb_env_info", path_);
  MDB_stat st;
  if (int rc = mdb_env_stat(env_, &st); rc != 0)
    return lmdb_error(rc, "mdb_env_stat", path_);
  env_stats out;
  out.map_size = info.me_mapsize;
  out.max_map_size = opts_.max_map_size;
  out.page_size = st.ms_psize;
  out.used_pages = uint64_t{info.me_last_pgno} + 1;
  out.used_bytes = out.used_pages * out.page_size;
  out.last_txn_id = info.me_last_txnid;
  out.max_readers = info.me_maxreaders;
  out.readers = info.me_numreaders;
  out.grows = grows_.load();
  out.stale_readers_cleared = stale_readers_cleared_;
  return out;
}

status env::grow() {
  return grow_from(map_size());
}

result<int> env::reader_check() {
  int dead = 0;
  if (int rc = mdb_reader_check(env_, &dead); rc != 0)
    return lmdb_error(rc, "mdb_reader_check", path_);
  return dead;
}

status env::grow_from(uint64_t seen) {
  std::lock_guard<std::mutex> guard{grow_mu_};
  uint64_t cur = map_size_.load();
  if (cur > seen)
    return {}; // Another writer grew it meanwhile.
  if (cur >= opts_.max_map_size)
    return status{status_code::resource_exhausted,
                  "the database in " + path_ + " is full: its map reached " +
                    size_text(cur) +
                    ", the limit set by env_options::max_map_size; raise "
                    "max_map_size (with room for it on the disk) and "
                    "restart, then delete old data if need be"};
  uint64_t next = cur > opts_.max_map_size / 2 ? opts_.max_map_size : cur * 2;
  // Whole OS pages: keeps later doublings aligned.
  uint64_t page = 4096;
  if (auto s = stats(); s.ok() && s->page_size > 0)
    page = s->page_size;
  if (next % page != 0)
    next -= next % page;
  if (next <= cur)
    return status{status_code::resource_exhausted,
                  "the database in " + path_ +
                    " is full: raise env_options::max_map_size"};
  if (auto st = resize_locked(next); !st.ok())
    return st;
  grows_.fetch_add(1);
  return {};
}

status env::resize_locked(uint64_t new_size) {
  growing_.store(true);
  {
    std::unique_lock<std::mutex> lk{gate_mu_};
    bool idle = gate_cv_.wait_for(lk, opts_.grow_timeout,
                                  [this] { return active_.load() == 0; });
    if (!idle) {
      growing_.store(false);
      lk.unlock();
      gate_cv_.notify_all();
      return status{status_code::unavailable,
                    "grow the map of " + path_ + ": " +
                      std::to_string(active_.load()) +
                      " transaction(s) stayed open for " +
                      std::to_string(opts_.grow_timeout.count()) +
                      " ms; keep read transactions short, and do not hold "
                      "one while writing"};
    }
  }
  // No txn of this env is open in this process: LMDB may remap.
  int rc = mdb_env_set_mapsize(env_, new_size);
  MDB_envinfo info;
  if (rc == 0)
    rc = mdb_env_info(env_, &info);
  if (rc == 0)
    map_size_.store(info.me_mapsize);
  {
    std::lock_guard<std::mutex> lk{gate_mu_};
    growing_.store(false);
  }
  gate_cv_.notify_all();
  if (rc != 0)
    return lmdb_error(rc, "mdb_env_set_mapsize", path_);
  return {};
}

void env::enter_txn() noexcept {
  for (;;) {
    active_.fetch_add(1);
    if (!growing_.load())
      return;
    leave_txn();
    std::unique_lock<std::mutex> lk{gate_mu_};
    gate_cv_.wait(lk, [this] { return !growing_.load(); });
  }
}

void env::leave_txn() noexcept {
  if (active_.fetch_sub(1) == 1 && growing_.load()) {
    std::lock_guard<std::mutex> lk{gate_mu_};
    gate_cv_.notify_all();
  }
}

std::string env::dbi_name(dbi db) const {
  std::lock_guard<std::mutex> guard{names_mu_};
  if (db.id() < names_.size() && !names_[db.id()].empty())
    return names_[db.id()];
  return "#" + std::to_string(db.id());
}

void env::set_dbi_name(dbi db, std::string_view name) {
  std::lock_guard<std::mutex> guard{names_mu_};
  if (names_.size() <= db.id())
    names_.resize(db.id() + 1);
  names_[db.id()] = std::string{name};
}

// -- txn ----------------------------------------------------------------------

txn::txn(txn&& other) noexcept {
  take(other);
}

txn& txn::operator=(txn&& other) noexcept {
  if (this != &other) {
    end();
    take(other);
  }
  return *this;
}

txn::~txn() {
  end();
}

void txn::take(txn& other) noexcept {
  env_ = other.env_;
  txn_ = other.txn_;
  read_only_ = other.read_only_;
  map_full_ = other.map_full_;
  cursors_ = other.cursors_;
  for (auto* c = cursors_; c != nullptr; c = c->next_)
    c->txn_ = this;
  other.txn_ = nullptr;
  other.cursors_ = nullptr;
}

void txn::end() noexcept {
  if (txn_ == nullptr)
    return;
  // LMDB frees a write txn's cursors itself: close ours first, so that no
  // cursor object is left holding a dangling handle.
  while (cursors_ != nullptr)
    cursors_->close();
  mdb_txn_abort(txn_);
  txn_ = nullptr;
  env_->leave_txn();
}

void txn::abort() noexcept {
  end();
}

status txn::commit() {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "commit: the transaction has already ended"};
  if (read_only_) {
    end();
    return {};
  }
  while (cursors_ != nullptr)
    cursors_->close();
  MDB_txn* t = txn_;
  txn_ = nullptr;
  int rc = mdb_txn_commit(t); // Frees the txn, also on failure.
  env_->leave_txn();
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return lmdb_error(rc, "commit", env_->path_);
  }
  return {};
}

status txn::fail(int rc, const char* what, dbi db) const {
  if (env_ == nullptr)
    return lmdb_error(rc, what, "(no environment)");
  return lmdb_error(rc, what, env_->path_,
                    db.valid() ? env_->dbi_name(db) : std::string{});
}

status txn::check_key(std::string_view key, const char* what, dbi db) const {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  std::string{what} + ": the transaction has ended"};
  if (key.empty() || key.size() > env_->max_key_size_) {
    std::string msg{what};
    msg += " '" + env_->dbi_name(db) + "' in " + env_->path_ + ": a key of " +
           std::to_string(key.size()) + " bytes; keys are 1 to " +
           std::to_string(env_->max_key_size_) + " bytes";
    return status{status_code::invalid_argument, std::move(msg)};
  }
  return {};
}

status txn::check_write(const char* what, dbi db) const {
  if (txn_ != nullptr && read_only_)
    return status{status_code::failed_precondition,
                  std::string{what} + " '" + env_->dbi_name(db) + "' in " +
                    env_->path_ + ": a read-only transaction cannot write"};
  return {};
}

namespace {

/// LMDB's default order (bytes compared unsigned, a prefix first) without
/// a call to memcmp per comparison: our keys are short and built of
/// big-endian u64s, so 8 bytes at a time decide almost every comparison.
/// The order is the same, so the files do not change and any LMDB tool
/// still reads them.
int compare_bytes(const MDB_val* a, const MDB_val* b) {
  auto* p = static_cast<const unsigned char*>(a->mv_data);
  auto* q = static_cast<const unsigned char*>(b->mv_data);
  size_t n = std::min(a->mv_size, b->mv_size);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, p + i, 8);
    std::memcpy(&y, q + i, 8);
    if (x != y) {
      x = __builtin_bswap64(x);
      y = __builtin_bswap64(y);
      return x < y ? -1 : 1;
    }
  }
  for (; i < n; ++i)
    if (p[i] != q[i])
      return p[i] < q[i] ? -1 : 1;
  return a->mv_size < b->mv_size ? -1 : (a->mv_size > b->mv_size ? 1 : 0);
}

} // namespace

result<dbi> txn::open_dbi(std::string_view name, dbi_flags flags) {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "open database: the transaction has ended"};
  if (name.empty())
    return status{status_code::invalid_argument,
                  "open database in " + env_->path_ + ": empty name"};
  std::string n{name};
  if (read_only_)
    return status{status_code::failed_precondition,
                  "open database '" + n + "' in " + env_->path_ +
                    ": needs a write transaction"};
  MDB_dbi id = 0;
  int rc = mdb_dbi_open(txn_, n.c_str(),
                        static_cast<unsigned>(flags) | MDB_CREATE, &id);
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return lmdb_error(rc, "open database", env_->path_, n);
  }
  if ((static_cast<unsigned>(flags) & (MDB_REVERSEKEY | MDB_INTEGERKEY)) == 0)
    if (rc = mdb_set_compare(txn_, id, compare_bytes); rc != 0)
      return lmdb_error(rc, "set the order of database", env_->path_, n);
  env_->set_dbi_name(dbi{id}, n);
  return dbi{id};
}

result<std::optional<std::string_view>> txn::get(dbi db,
                                                 std::string_view key) const {
  if (auto st = check_key(key, "get from", db); !st.ok())
    return st;
  MDB_val k = to_val(key);
  MDB_val v;
  int rc = mdb_get(txn_, db.id(), &k, &v);
  if (rc == 0)
    return std::optional<std::string_view>{to_view(v)};
  if (rc == MDB_NOTFOUND)
    return std::optional<std::string_view>{};
  return fail(rc, "get from", db);
}

status txn::put(dbi db, std::string_view key, std::string_view value,
                put_flags flags) {
  if (auto st = check_key(key, "put into", db); !st.ok())
    return st;
  if (auto st = check_write("put into", db); !st.ok())
    return st;
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  int rc = mdb_put(txn_, db.id(), &k, &v, static_cast<unsigned>(flags));
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return fail(rc, "put into", db);
  }
  return {};
}

result<mutable_span> txn::reserve(dbi db, std::string_view key, size_t size,
                                  put_flags flags) {
  if (auto st = check_key(key, "reserve in", db); !st.ok())
    return st;
  if (auto st = check_write("reserve in", db); !st.ok())
    return st;
  MDB_val k = to_val(key);
  MDB_val v{size, nullptr};
  int rc =
    mdb_put(txn_, db.id(), &k, &v, static_cast<unsigned>(flags) | MDB_RESERVE);
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return fail(rc, "reserve in", db);
  }
  return mutable_span{static_cast<char*>(v.mv_data), size};
}

status txn::del(dbi db, std::string_view key) {
  if (auto st = check_key(key, "delete from", db); !st.ok())
    return st;
  if (auto st = check_write("delete from", db); !st.ok())
    return st;
  MDB_val k = to_val(key);
  int rc = mdb_del(txn_, db.id(), &k, nullptr);
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return fail(rc, "delete from", db);
  }
  return {};
}

status txn::clear(dbi db) {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "clear: the transaction has ended"};
  if (auto st = check_write("clear", db); !st.ok())
    return st;
  int rc = mdb_drop(txn_, db.id(), 0);
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      map_full_ = true;
    return fail(rc, "clear", db);
  }
  return {};
}

result<uint64_t> txn::entries(dbi db) const {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "count entries: the transaction has ended"};
  MDB_stat st;
  if (int rc = mdb_stat(txn_, db.id(), &st); rc != 0)
    return fail(rc, "count entries of", db);
  return uint64_t{st.ms_entries};
}

result<uint64_t> txn::free_pages() const {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "count free pages: the transaction has ended"};
  MDB_cursor* c = nullptr;
  // The free list is database 0: each value is an ID list whose first word
  // is the number of page numbers that follow.
  if (int rc = mdb_cursor_open(txn_, 0, &c); rc != 0)
    return lmdb_error(rc, "mdb_cursor_open (free list)",
                      env_ ? env_->path_ : std::string{"(no environment)"});
  uint64_t pages = 0;
  MDB_val k, v;
  int rc;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    size_t n = 0;
    if (v.mv_size >= sizeof(n))
      std::memcpy(&n, v.mv_data, sizeof(n));
    pages += n;
  }
  mdb_cursor_close(c);
  if (rc != MDB_NOTFOUND)
    return lmdb_error(rc, "mdb_cursor_get (free list)",
                      env_ ? env_->path_ : std::string{"(no environment)"});
  return pages;
}

result<cursor> txn::open_cursor(dbi db) {
  if (txn_ == nullptr)
    return status{status_code::failed_precondition,
                  "open cursor: the transaction has ended"};
  MDB_cursor* c = nullptr;
  if (int rc = mdb_cursor_open(txn_, db.id(), &c); rc != 0)
    return fail(rc, "open cursor on", db);
  cursor out;
  out.cur_ = c;
  out.txn_ = this;
  out.db_ = db;
  out.next_ = cursors_;
  if (cursors_ != nullptr)
    cursors_->prev_ = &out;
  cursors_ = &out;
  return result<cursor>{std::move(out)};
}

// -- cursor -------------------------------------------------------------------

cursor::cursor(cursor&& other) noexcept {
  take(other);
}

cursor& cursor::operator=(cursor&& other) noexcept {
  if (this != &other) {
    close();
    take(other);
  }
  return *this;
}

cursor::~cursor() {
  close();
}

void cursor::take(cursor& other) noexcept {
  cur_ = other.cur_;
  txn_ = other.txn_;
  prev_ = other.prev_;
  next_ = other.next_;
  db_ = other.db_;
  valid_ = other.valid_;
  deleted_ = other.deleted_;
  key_ = other.key_;
  value_ = other.value_;
  if (cur_ != nullptr) {
    if (prev_ != nullptr)
      prev_->next_ = this;
    else
      txn_->cursors_ = this;
    if (next_ != nullptr)
      next_->prev_ = this;
  }
  other.cur_ = nullptr;
  other.txn_ = nullptr;
  other.prev_ = other.next_ = nullptr;
  other.valid_ = other.deleted_ = false;
}

void cursor::unlink() noexcept {
  if (prev_ != nullptr)
    prev_->next_ = next_;
  else if (txn_ != nullptr)
    txn_->cursors_ = next_;
  if (next_ != nullptr)
    next_->prev_ = prev_;
  prev_ = next_ = nullptr;
}

void cursor::close() noexcept {
  if (cur_ == nullptr)
    return;
  unlink();
  mdb_cursor_close(cur_);
  cur_ = nullptr;
  txn_ = nullptr;
  valid_ = deleted_ = false;
  key_ = value_ = {};
}

status cursor::not_open(const char* what) const {
  return status{status_code::failed_precondition,
                std::string{"cursor "} + what +
                  ": the cursor is closed (its transaction ended)"};
}

status cursor::land(int rc, const void* k, size_t kn, const void* v, size_t vn,
                    const char* what) {
  deleted_ = false;
  if (rc == 0) {
    valid_ = true;
    key_ = {static_cast<const char*>(k), kn};
    value_ = {static_cast<const char*>(v), vn};
    return {};
  }
  valid_ = false;
  key_ = value_ = {};
  if (rc == MDB_NOTFOUND)
    return {};
  return txn_->fail(rc, (std::string{"cursor "} + what + " in").c_str(), db_);
}

status cursor::step(int op, const char* what) {
  if (cur_ == nullptr)
    return not_open(what);
  MDB_val k{0, nullptr};
  MDB_val v{0, nullptr};
  int rc = mdb_cursor_get(cur_, &k, &v, static_cast<MDB_cursor_op>(op));
  return land(rc, k.mv_data, k.mv_size, v.mv_data, v.mv_size, what);
}

status cursor::first() {
  return step(MDB_FIRST, "first");
}

status cursor::last() {
  return step(MDB_LAST, "last");
}

status cursor::next() {
  if (cur_ != nullptr && !valid_ && !deleted_)
    return status{status_code::failed_precondition,
                  "cursor next: the cursor is not on an entry"};
  return step(MDB_NEXT, "next");
}

status cursor::prev() {
  if (cur_ != nullptr && !valid_ && !deleted_)
    return status{status_code::failed_precondition,
                  "cursor prev: the cursor is not on an entry"};
  return step(MDB_PREV, "prev");
}

status cursor::seek(std::string_view key) {
  if (cur_ == nullptr)
    return not_open("seek");
  if (key.empty())
    return first();
  if (auto st = txn_->check_key(key, "cursor seek in", db_); !st.ok()) {
    valid_ = deleted_ = false;
    return st;
  }
  MDB_val k = to_val(key);
  MDB_val v{0, nullptr};
  int rc = mdb_cursor_get(cur_, &k, &v, MDB_SET_RANGE);
  return land(rc, k.mv_data, k.mv_size, v.mv_data, v.mv_size, "seek");
}

status cursor::seek_for_prev(std::string_view key) {
  if (key.empty())
    return status{status_code::invalid_argument,
                  "cursor seek_for_prev: empty key"};
  if (auto st = seek(key); !st.ok())
    return st;
  if (!valid_)
    return last();
  if (key_ != key)
    return prev();
  return {};
}

status cursor::put(std::string_view key, std::string_view value,
                   put_flags flags) {
  if (cur_ == nullptr)
    return not_open("put");
  valid_ = deleted_ = false;
  key_ = value_ = {};
  if (auto st = txn_->check_key(key, "cursor put into", db_); !st.ok())
    return st;
  if (auto st = txn_->check_write("cursor put into", db_); !st.ok())
    return st;
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  int rc = mdb_cursor_put(cur_, &k, &v, static_cast<unsigned>(flags));
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      txn_->map_full_ = true;
    return txn_->fail(rc, "cursor put into", db_);
  }
  return {};
}

status cursor::del() {
  if (cur_ == nullptr)
    return not_open("del");
  if (!valid_)
    return status{status_code::failed_precondition,
                  "cursor del: the cursor is not on an entry"};
  if (auto st = txn_->check_write("cursor del in", db_); !st.ok())
    return st;
  int rc = mdb_cursor_del(cur_, 0);
  valid_ = false;
  key_ = value_ = {};
  if (rc != 0) {
    if (rc == MDB_MAP_FULL)
      txn_->map_full_ = true;
    return txn_->fail(rc, "cursor del in", db_);
  }
  deleted_ = true;
  return {};
}

// -- format version -----------------------------------------------------------

status check_format(txn& t, dbi meta, std::string_view name, uint32_t current,
                    uint32_t* stored) {
  auto v = t.get(meta, name);
  if (!v)
    return v.error();
  const std::string& path =
    t.owner() != nullptr ? t.owner()->path() : std::string{};
  if (!*v) {
    if (stored != nullptr)
      *stored = current;
    return set_format(t, meta, name, current);
  }
  std::string_view bytes = **v;
  if (bytes.size() != 4)
    return status{status_code::corruption,
                  "data directory " + path + ": format record '" +
                    std::string{name} + "' has " +
                    std::to_string(bytes.size()) + " bytes instead of 4"};
  uint32_t found = get_be32(bytes.data());
  if (stored != nullptr)
    *stored = found;
  if (found > current)
    return status{status_code::version_mismatch,
                  "data directory " + path + " has format " +
                    std::to_string(found) + " ('" + std::string{name} +
                    "'), this parleyd knows up to " + std::to_string(current) +
                    ": upgrade parleyd (or libparley) to open it"};
  return {};
}

status delete_prefix(txn& t, dbi db, std::string_view prefix) {
  auto c = t.open_cursor(db);
  if (!c)
    return c.error();
  if (auto s = c->seek(prefix); !s)
    return s;
  while (c->valid() && c->key().substr(0, prefix.size()) == prefix) {
    if (auto s = c->del(); !s)
      return s;
    if (auto s = c->next(); !s) // the entry after the deleted one
      return s;
  }
  return {};
}

status set_format(txn& t, dbi meta, std::string_view name, uint32_t version) {
  char buf[4];
  encode_be32(buf, version);
  return t.put(meta, name, std::string_view{buf, 4});
}

status open_tables(txn& t, std::initializer_list<table_ref> tables) {
  for (auto& tb : tables) {
    auto d = t.open_dbi(tb.name);
    if (!d)
      return d.error();
    *tb.handle = *d;
  }
  return {};
}

} // namespace parley::store
