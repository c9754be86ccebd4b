package projection

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// switchScript replaces a live read model by a rebuilt one in one atomic
// step: the live model's keys are deleted and every key of the rebuilt
// model is renamed to its live name. Readers see the old model or the new
// one, never a mix. KEYS[1] and KEYS[2] are the live and rebuilt key
// prefixes; returns the number of keys moved.
//
// It walks the keys with KEYS (inside a script, for atomicity), which
// blocks Redis for the time of the walk: a rebuild is an operator's action,
// sized for read models of up to a few million keys.
var switchScript = redis.NewScript(`
for _, k in ipairs(redis.call('KEYS', KEYS[1] .. '*')) do
  redis.call('DEL', k)
end
local moved = 0
local n = string.len(KEYS[2])
for _, k in ipairs(redis.call('KEYS', KEYS[2] .. '*')) do
  redis.call('RENAME', k, KEYS[1] .. string.sub(k, n + 1))
  moved = moved + 1
end
return moved
`)

// SwitchModel atomically replaces the model in keyspace live by the one
// rebuilt in keyspace rebuilt. The live projector notices the changed
// checkpoint at its next commit and continues from the rebuilt one.
func SwitchModel(ctx context.Context, rdb *redis.Client, model, live, rebuilt string) (int, error) {
	if live == rebuilt {
		return 0, fmt.Errorf("switch %s: live and rebuilt keyspaces are the same", model)
	}
	n, err := switchScript.Run(ctx, rdb, []string{KeyBase(live, model), KeyBase(rebuilt, model)}).Int()
	if err != nil {
		return 0, fmt.Errorf("switch %s: %w", model, err)
	}
	return n, nil
}
