package service

import "container/list"

type entry struct {
	key   string
	value interface{}
}

// Cache is a fixed-size cache that evicts the least recently used entry.
type Cache struct {
	capacity int
	order    *list.List
	items    map[string]*list.Element
}

func NewCache(capacity int) *Cache {
	return &Cache{capacity: capacity, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *Cache) Get(key string) (interface{}, bool) {
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*entry).value, true
	}
	return nil, false
}

func (c *Cache) Put(key string, value interface{}) {
	if el, ok := c.items[key]; ok {
		el.Value.(*entry).value = value
		c.order.MoveToFront(el)
		return
	}
	el := c.order.PushFront(&entry{key, value})
	c.items[key] = el
	if c.order.Len() > c.capacity {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry).key)
	}
}
