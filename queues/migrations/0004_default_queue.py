from django.db import migrations
from django.db.models import F

DEFAULT = {
    "queue_id": "general",
    "name_ko": "일반 상담",
    "name_en": "General counseling",
    "languages": ["ko", "en"],
}


def create_default_queue(apps, schema_editor):
    """A default queue exists after migrate, so a join without queueId behaves as before."""
    queue_model = apps.get_model("queues", "Queue")
    queue, _ = queue_model.objects.get_or_create(queue_id=DEFAULT["queue_id"], defaults=DEFAULT)
    registration = apps.get_model("queues", "Registration")
    registration.objects.filter(queue__isnull=True).update(
        queue=queue, virtual_arrival=F("enqueued_at"), queue_since=F("enqueued_at")
    )


class Migration(migrations.Migration):
    dependencies = [("queues", "0003_routing_queues")]
    operations = [migrations.RunPython(create_default_queue, migrations.RunPython.noop)]
