import logging
import random
from decimal import Decimal

from django.core.management.base import BaseCommand

from admin_project.products import services
from admin_project.products.models import Product
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("Create, update and delete products through the same services as the API (so every "
            "change records its event). For demos, load and fault tests.")

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=100, help="products to create")
        parser.add_argument("--updates", type=int, default=0,
                            help="random updates after creating")
        parser.add_argument("--deletes", type=int, default=0,
                            help="random deletes at the end")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, count, updates, deletes, seed, **options):
        # one summary line instead of a log line per change (thousands of them)
        logging.getLogger("admin_project.products").setLevel(logging.WARNING)
        trace_id_set(trace_id_new())  # one trace id for the whole run
        rnd = random.Random(seed)
        ids = []
        for i in range(count):
            product = services.product_create(
                title=f"Generated {i}", price=Decimal(rnd.randint(0, 99999)) / 100,
                image=f"https://img.example/{i}.png", description="generated")
            ids.append(product.pk)
        live = ids or list(Product.objects.values_list("pk", flat=True))
        for n in range(updates):
            services.product_update(product_id=rnd.choice(live),
                                    data={"title": f"Updated {n}",
                                          "price": Decimal(rnd.randint(0, 99999)) / 100})
        for pid in rnd.sample(live, min(deletes, len(live))):
            services.product_delete(product_id=pid)
        events = count + updates + min(deletes, len(live))
        self.stdout.write(f"generated {events} events ({count} created, {updates} updates, "
                          f"{min(deletes, len(live))} deletes)")
