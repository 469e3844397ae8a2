"""A shopping cart user function written with CloudState's Python support library (0.1.1).

stead's proxy tests run it as a real process: `python shopping_cart.py DESCRIPTORS` with PORT set.
DESCRIPTORS is a serialized FileDescriptorSet of examples/shopping-cart-python/proto (built by
the crate's build script); the message classes are made from it at start, since the library's users would
normally generate them with protoc.
"""

import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, symbol_database
from google.protobuf import empty_pb2  # noqa: F401  (registers google/protobuf/empty.proto)
from cloudstate import entity_key_pb2  # noqa: F401  (registers cloudstate/entity_key.proto)


def load_descriptors(path):
    """Adds every file of the set that the default pool lacks; returns the pool."""
    pool = descriptor_pool.Default()
    with open(path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    for file_proto in fds.file:
        try:
            pool.FindFileByName(file_proto.name)
        except KeyError:
            pool.Add(file_proto)
    return pool


pool = load_descriptors(sys.argv[1])
sym_db = symbol_database.Default()


def message_class(full_name):
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
    sym_db.RegisterMessage(cls)
    return cls


AddLineItem = message_class("com.example.shoppingcart.AddLineItem")
RemoveLineItem = message_class("com.example.shoppingcart.RemoveLineItem")
GetShoppingCart = message_class("com.example.shoppingcart.GetShoppingCart")
ApiLineItem = message_class("com.example.shoppingcart.LineItem")
ApiCart = message_class("com.example.shoppingcart.Cart")
LineItem = message_class("com.example.shoppingcart.persistence.LineItem")
ItemAdded = message_class("com.example.shoppingcart.persistence.ItemAdded")
ItemRemoved = message_class("com.example.shoppingcart.persistence.ItemRemoved")
CartSnapshot = message_class("com.example.shoppingcart.persistence.Cart")
Empty = message_class("google.protobuf.Empty")

from cloudstate.cloudstate import CloudState  # noqa: E402
from cloudstate.event_sourced_context import EventSourcedCommandContext  # noqa: E402
from cloudstate.event_sourced_entity import EventSourcedEntity  # noqa: E402

service = pool.FindServiceByName("com.example.shoppingcart.ShoppingCart")
files = [pool.FindFileByName("shoppingcart.proto"), pool.FindFileByName("shoppingcart_domain.proto")]

entity = EventSourcedEntity(
    service, files, lambda entity_id: {}, persistence_id="shopping-cart", snapshot_every=3
)


class State(dict):
    """The cart: product id -> [name, quantity]. A named type so that handlers can ask for it."""


entity.init_state = lambda entity_id: State()


@entity.snapshot()
def snapshot(state: State):
    cart = CartSnapshot()
    for product_id, (name, quantity) in sorted(state.items()):
        cart.items.append(LineItem(product_id=product_id, name=name, quantity=quantity))
    return cart


@entity.snapshot_handler()
def handle_snapshot(state: State, snapshot: CartSnapshot):
    state.clear()
    for item in snapshot.items:
        state[item.product_id] = [item.name, item.quantity]
    return state


@entity.event_handler(ItemAdded)
def item_added(state: State, event: ItemAdded):
    item = event.item
    name, quantity = state.get(item.product_id, [item.name, 0])
    state[item.product_id] = [name, quantity + item.quantity]
    return state


@entity.event_handler(ItemRemoved)
def item_removed(state: State, event: ItemRemoved):
    state.pop(event.product_id, None)
    return state


@entity.command_handler("AddItem")
def add_item(state: State, item: AddLineItem, ctx: EventSourcedCommandContext):
    if item.quantity <= 0:
        ctx.fail("Cannot add negative quantity of to item {}".format(item.product_id))
    else:
        line = LineItem(product_id=item.product_id, name=item.name, quantity=item.quantity)
        ctx.emit(ItemAdded(item=line))
    return Empty()


@entity.command_handler("RemoveItem")
def remove_item(state: State, item: RemoveLineItem, ctx: EventSourcedCommandContext):
    if item.product_id not in state:
        ctx.fail("Cannot remove item {} because it is not in the cart.".format(item.product_id))
    else:
        ctx.emit(ItemRemoved(product_id=item.product_id))
    return Empty()


@entity.command_handler("GetCart")
def get_cart(state: State, command: GetShoppingCart):
    cart = ApiCart()
    for product_id, (name, quantity) in sorted(state.items()):
        cart.items.append(ApiLineItem(product_id=product_id, name=name, quantity=quantity))
    return cart


if __name__ == "__main__":
    CloudState().register_event_sourced_entity(entity).start()
