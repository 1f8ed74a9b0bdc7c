"""The API's routes by concern: `scoring` (/predict, /model), `feedback` (/outcomes), `marketing`
(/compare, /compare.csv) and `ops` (/health, /ready, /metrics, /admin/reload)."""
