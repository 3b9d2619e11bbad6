"""The face API enrolled the largest face of a photo: Madonna beside a larger Ben Affleck,
sent to `newperson` as madonna by a script enrolling staff photos, enrolled Ben as madonna, and
Ben then verified as her. The console's upload and `enrol` already refused such a photo; the API
answers -1111 now (addface: that image's ret_code), and a face far smaller in the background
still enrols."""

from __future__ import annotations

import pytest

from edge.api.client import CloudApiError
from edge.core.errors import SEVERAL_FACES
from tests.support.hub import start_hub
from tests.support.vision import side_by_side


def test_a_photo_with_two_faces_of_a_size_is_not_enrolled(tmp_path, photos):
    madonna, ben = photos("Madonna", "train_1"), photos("Ben_Afflek", "train_1")
    with start_hub(tmp_path) as hub:
        client = hub.client(timeout=60)
        with pytest.raises(CloudApiError) as refused:
            client.newperson("madonna", ["staff"], side_by_side(madonna, ben, 1.25), person_name="Madonna")
        assert refused.value.code == SEVERAL_FACES
        with pytest.raises(CloudApiError) as unknown:
            client.getinfo("madonna")
        assert unknown.value.code == -1303  # nothing stored
        client.newperson("madonna", ["staff"], side_by_side(madonna, ben, 0.3), person_name="Madonna")
        added = client.addface("madonna", [side_by_side(photos("Madonna", "train_2"), ben, 1.25),
                                           photos("Madonna", "train_3")])
        assert added["ret_codes"] == [SEVERAL_FACES, 0] and added["added"] == 1, added
        assert client.verify("madonna", photos("Ben_Afflek", "train_2"))["ismatch"] is False
        client.close()
