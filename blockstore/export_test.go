package blockstore

// SyncCount returns how many syncs s has done.
func SyncCount(s *Store) uint64 { return s.syncs.Load() }

// Unsynced returns how many committed writes no finished sync covers yet.
func Unsynced(s *Store) uint64 {
	synced := s.synced.Load()
	return s.written.Load() - synced
}
