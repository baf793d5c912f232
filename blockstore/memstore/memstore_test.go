package memstore_test

import (
	"testing"

	"github.com/reefproject/reef/blockstore/memstore"
	"github.com/reefproject/reef/blockstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Interface { return memstore.New() })
}
