#pragma once
// The processes of a data-parallel run and what they say to each other.
//
// Built with MPI (MARROW_MPI defined, Open MPI's mpi.h on the include path,
// libmpi linked: CMake's MARROW_MPI option does all three) a Comm is an MPI
// communicator; built without it, every Comm is a world of one process and
// every call below is a no-op, so code written for N processes runs unchanged
// on one.
//
// Only the main thread talks (MPI_THREAD_FUNNELED), outside OpenMP regions.
//
//   dist::Comm& world = dist::Comm::world();   // starts MPI on first use
//   world.agree("charformer", config_text);    // every rank the same run, or a clear error
//   world.broadcast(bytes, n);                 // rank 0's copy everywhere
//   world.tree_sum(grad, n);                   // the pairwise sum over ranks, the same bits on every rank
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"

#ifdef MARROW_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: MPI's deprecated C++ bindings do not compile cleanly
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace marrow::dist {

// 64-bit FNV-1a: what ranks compare instead of sending their whole configuration.
inline std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

inline bool is_power_of_two(long long n) { return n > 0 && (n & (n - 1)) == 0; }

class Comm {
 public:
  // Every process of the job (mpirun -np N); one process when not started by
  // mpirun or built without MPI.
  static Comm& world() {
    static Comm w = make_world();
    return w;
  }
  // This process alone: the reference a distributed result is compared with.
  static Comm& self() {
    static Comm s = make_self();
    return s;
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  void barrier() const {
#ifdef MARROW_MPI
    if (size_ > 1) MPI_Barrier(comm_);
#endif
  }

  // Rank `root`'s bytes into every rank's buffer.
  void broadcast(void* data, std::size_t bytes, int root = 0) const {
#ifdef MARROW_MPI
    if (size_ == 1) return;
    auto* p = static_cast<char*>(data);
    for (std::size_t off = 0; off < bytes; off += kChunk) {
      const int n = int(std::min(kChunk, bytes - off));
      MPI_Bcast(p + off, n, MPI_BYTE, root, comm_);
    }
#else
    (void)data, (void)bytes, (void)root;
#endif
  }

  // Every rank's n values of T, in rank order: all[r·n .. r·n + n) is rank r's.
  template <class T> void allgather(const T* mine, std::size_t n, T* all) const {
    static_assert(std::is_trivially_copyable_v<T>, "allgather: plain values only");
    if (size_ == 1) {
      std::copy_n(mine, n, all);
      return;
    }
#ifdef MARROW_MPI
    MARROW_CHECK(n * sizeof(T) <= kChunk, "allgather: ", n * sizeof(T), " bytes per rank is more than one message");
    MPI_Allgather(mine, int(n * sizeof(T)), MPI_BYTE, all, int(n * sizeof(T)), MPI_BYTE, comm_);
#endif
  }

  // True on every rank when it is true on any (a stop request seen by one rank
  // stops all of them at the same step).
  bool any(bool mine) const {
    if (size_ == 1) return mine;
    int v = mine ? 1 : 0, out = v;
#ifdef MARROW_MPI
    MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, comm_);
#endif
    return out != 0;
  }

  // Start-up agreement: every rank passes the text that must be the same
  // everywhere (the configuration, the parameter shapes). A mismatch throws on
  // every rank, naming the ranks that differ from rank 0, so mpirun stops at
  // once instead of hanging in the first gradient sum.
  void agree(const std::string& what, const std::string& text) const {
    if (size_ == 1) return;
#ifdef MARROW_MPI
    std::uint64_t mine = fnv1a(text);
    std::vector<std::uint64_t> all(std::size_t(size_), 0);
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_);
    std::string bad;
    for (int r = 1; r < size_; ++r)
      if (all[std::size_t(r)] != all[0]) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
    MARROW_CHECK(bad.empty(), what, ": rank(s) ", bad, " of ", size_, " started with another ",
                 "configuration than rank 0 (flags, data or model shapes differ); every rank must run the same command");
#else
    (void)what, (void)text;
#endif
  }

  // data ← the sum of every rank's data, added in the fixed pairwise tree of
  // rank order ((r0 + r1) + (r2 + r3) ...), so every rank ends with the same
  // bits and they do not depend on which message arrived first. The world size
  // must be a power of two. Pieces of at most max_piece<T>() values go one
  // after another (PendingSum, which does the work, takes one piece).
  template <class T> void tree_sum(T* data, std::size_t n) const {
    if (size_ == 1 || n == 0) return;
    PendingSum<T> piece;
    for (std::size_t off = 0; off < n; off += max_piece<T>()) {
      piece.start(*this, data + off, std::min(max_piece<T>(), n - off));
      piece.wait();
    }
  }

  // The most values of T one PendingSum takes (messages stay under 2^31 bytes' int counts).
  template <class T> std::size_t max_piece() const {
    return std::max<std::size_t>(1, kChunk / sizeof(T) / std::size_t(size_)) * std::size_t(size_);
  }

  // A tree_sum of one piece that runs while the caller computes: start() it,
  // call test() now and then (MPI moves a non-blocking collective along only
  // inside MPI calls), wait() for the end. The same additions in the same
  // order as the blocking tree_sum, so the same bits.
  //
  // A reduce-scatter then an all-gather, as a ring all-reduce moves its bytes:
  // rank r owns the r-th of N chunks, receives every rank's copy of it, adds
  // them up in the tree, and sends the sum to everyone. Each rank sends and
  // receives 2(N − 1)/N of the vector, however many ranks there are.
  // Buffers are kept between uses: a PendingSum reused for the same sizes allocates nothing.
  template <class T> class PendingSum {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "tree_sum: float or double");

   public:
    PendingSum() = default;
    PendingSum(const PendingSum&) = delete;
    PendingSum& operator=(const PendingSum&) = delete;
    ~PendingSum() {
      if (stage_ != kDone) wait();  // never leave MPI writing into freed memory
    }

    void start(const Comm& comm, T* data, std::size_t n) {
      MARROW_CHECK(stage_ == kDone, "PendingSum: started again before the last sum finished");
      if (comm.size() == 1 || n == 0) return;
#ifdef MARROW_MPI
      MARROW_CHECK(is_power_of_two(comm.size()), "tree_sum: the number of processes (", comm.size(),
                   ") must be a power of two so that the pairwise tree is fixed");
      MARROW_CHECK(n <= comm.max_piece<T>(), "PendingSum: ", n, " values is more than one piece (",
                   comm.max_piece<T>(), ")");
      comm_ = comm.comm_;
      gather_comm_ = comm.gather_comm_;
      data_ = data;
      const std::size_t N = std::size_t(comm.size());
      counts_.resize(N), offsets_.resize(N), recv_counts_.resize(N), recv_offsets_.resize(N);
      for (std::size_t r = 0; r < N; ++r) {  // chunk r: [n·r/N, n·(r+1)/N)
        offsets_[r] = int(n * r / N);
        counts_[r] = int(n * (r + 1) / N) - offsets_[r];
      }
      me_ = std::size_t(comm.rank());
      mine_ = std::size_t(counts_[me_]);
      copies_.resize(N * mine_);  // rank q's copy of my chunk at q·mine
      for (std::size_t q = 0; q < N; ++q) recv_counts_[q] = int(mine_), recv_offsets_[q] = int(q * mine_);
      MPI_Ialltoallv(data_, counts_.data(), offsets_.data(), type(), copies_.data(), recv_counts_.data(),
                     recv_offsets_.data(), type(), comm_, &request_);
      stage_ = kScatter;
#else
      (void)data;
#endif
    }

    // The reduce-scatter is still running (test() may move it to the all-gather).
    bool scattering() const { return stage_ == kScatter; }

    // True once the sum is in place (also when nothing was started). MPI
    // matches collectives on a communicator by the order ranks start them: the
    // all-gathers go on their own communicator, and several PendingSums in
    // flight must be tested in the same order on every rank (ShardSum::progress).
    bool test() {
#ifdef MARROW_MPI
      int flag = 0;
      if (stage_ == kDone) return true;
      MPI_Test(&request_, &flag, MPI_STATUS_IGNORE);
      if (!flag) return false;
      if (stage_ == kScatter) {
        gather_my_chunk();
        return false;
      }
      stage_ = kDone;
#endif
      return true;
    }

    void wait() {
#ifdef MARROW_MPI
      if (stage_ == kScatter) {
        MPI_Wait(&request_, MPI_STATUS_IGNORE);
        gather_my_chunk();
      }
      if (stage_ == kGather) MPI_Wait(&request_, MPI_STATUS_IGNORE);
      stage_ = kDone;
#endif
    }

   private:
    enum Stage { kDone, kScatter, kGather };
    Stage stage_ = kDone;
#ifdef MARROW_MPI
    static MPI_Datatype type() { return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE; }

    // Every rank's copy of my chunk is here: sum them in the tree, then send the sum to all.
    void gather_my_chunk() {
      const std::size_t N = counts_.size();
      T* copies = copies_.data();
      for (std::size_t width = 1; width < N; width *= 2)
        for (std::size_t q = 0; q + width < N; q += 2 * width) {
          T* l = copies + q * mine_;
          const T* r = copies + (q + width) * mine_;
          for (std::size_t i = 0; i < mine_; ++i) l[i] = l[i] + r[i];
        }
      std::copy_n(copies, mine_, data_ + offsets_[me_]);
      MPI_Iallgatherv(MPI_IN_PLACE, 0, type(), data_, counts_.data(), offsets_.data(), type(), gather_comm_,
                      &request_);
      stage_ = kGather;
    }

    MPI_Comm comm_ = MPI_COMM_SELF, gather_comm_ = MPI_COMM_SELF;
    MPI_Request request_ = MPI_REQUEST_NULL;
    T* data_ = nullptr;
    std::size_t me_ = 0, mine_ = 0;
    std::vector<int> counts_, offsets_, recv_counts_, recv_offsets_;
    std::vector<T> copies_;
#endif
  };

 private:
  static constexpr std::size_t kChunk = std::size_t(1) << 24;  // bytes per message: int counts stay small
  int rank_ = 0, size_ = 1;
#ifdef MARROW_MPI
  MPI_Comm comm_ = MPI_COMM_SELF;
  MPI_Comm gather_comm_ = MPI_COMM_SELF;  // the all-gather half of tree sums (PendingSum)

  // MPI starts once per process, with the main thread the only one that calls
  // it, and ends at exit after every rank got there.
  static void start() {
    int started = 0;
    MPI_Initialized(&started);
    if (started) return;
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MARROW_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI: this MPI library cannot run with OpenMP threads "
                                                  "(MPI_THREAD_FUNNELED not provided)");
    std::atexit([] {
      int done = 0;
      MPI_Finalized(&done);
      if (!done) MPI_Finalize();
    });
    // A rank that fails takes the job down with it (mpirun then stops the rest),
    // instead of leaving the others blocked in a sum that never completes.
    detail::g_on_failure = [](int code) {
      int size = 1;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    };
  }
  // Started by mpirun (or another launcher that sets the PMI/PMIx variables).
  static bool launched() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
  }
  static Comm make_world() {
    Comm c;
    if (!launched()) return c;  // a plain run: no MPI start-up cost, a world of one
    start();
    c.comm_ = MPI_COMM_WORLD;
    MPI_Comm_rank(c.comm_, &c.rank_);
    MPI_Comm_size(c.comm_, &c.size_);
    MPI_Comm_dup(c.comm_, &c.gather_comm_);
    return c;
  }
#else
  static Comm make_world() { return Comm(); }
#endif
  static Comm make_self() { return Comm(); }
};

}  // namespace marrow::dist
